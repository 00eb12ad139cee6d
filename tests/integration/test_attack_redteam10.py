"""Tenth red-team pass: root's own record of the URLs it fetched (``<dir>/private/remotes.json``,
commit 477096c), attacked from where it can be reached: the servers root fetches from, and a
real member of group rkt (``trustd-it-user``, through an unprivileged ``/bin/sh``).

Each test makes the attack, then asserts what trustd guarantees, counting outcomes (never
timing them). The docstrings say what was wrong where a hole was found.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests._busybox import busybox_aci
from tests.conftest import ConfigDirs, Keys
from tests.integration.conftest import NAME, rkt, serve_signed_acis, trust_good_key

# http.client takes header lines of up to 64 KiB and 100 of them, and the transport joins
# repeated headers: a server can send an ETag of megabytes. Fourteen lines of 60,000 bytes
# (840 KB) keep the fetch child's answer under its 1 MiB cap, so each fetch succeeds.
_ETAG_LINES, _ETAG_LINE = 14, 60_000
_RECORD_MAX = 4 << 20  # what root reads of its record (datadir._RECORD_MAX)


def _fat_etag_reply(body: bytes, n: int) -> Any:
    """``body`` with an ETag of ``_ETAG_LINES`` header lines (a different one per ``n``)."""

    def handle(req: Any) -> None:
        req.send_response(200)
        for i in range(_ETAG_LINES):
            req.send_header("ETag", f"{n}-{i}-".ljust(_ETAG_LINE, "x"))
        req.send_header("Content-Length", str(len(body)))
        req.send_header("Connection", "close")
        req.end_headers()
        req.wfile.write(body)

    return handle


def _fetch(dirs: ConfigDirs, url: str) -> subprocess.CompletedProcess[str]:
    return rkt(dirs, "--insecure-options=http", "fetch", "--full", url)


def test_a_server_sending_huge_etags_cannot_stop_every_later_root_fetch(
    shared_dirs: ConfigDirs, keys: Keys, tmp_path: Path
) -> None:
    """Found by red team 10 (fixed: ``datadir.record_remotes``, ``root_remotes``). Root's
    record kept every URL's ETag whole and its writer had no size bound (4096 URLs "of ~300
    bytes"), while its reader refuses a file past 4 MiB, and ``fetch_one`` reads it before
    every root fetch (of a URL, a name or a file, and so every ``rkt run`` of one) with only
    a missing or undecodable file taken as no record. A server root fetches a genuinely
    signed image from (a mirror replays the signed bytes; over http, anyone on the path)
    answered with an ETag of 840 KB (14 header lines, which the transport joins); five such
    fetches and the record was past the cap: every later root fetch failed ("remotes.json
    is N bytes, more than 4194304"), for good, until the admin found and removed the file.
    Now a URL or ETag longer than any a cache needs is not recorded (the URL is fetched as
    new next time), the file is kept within what its reader takes, and a record that cannot
    be read is said and taken as none: fetching goes on."""
    from tests._https import LocalServer, reply  # noqa: PLC0415

    subprocess.run(["bash", "scripts/setup-groups.sh"], check=True)
    trust_good_key(shared_dirs, keys, tmp_path)
    aci = busybox_aci(tmp_path / "app.aci", NAME)
    keys.gpg.sign(keys.good, aci, Path(f"{aci}.asc"))
    body, signature = aci.read_bytes(), Path(f"{aci}.asc").read_bytes()
    hostile = 5  # 5 x 840 KB is past the reader's 4 MiB
    assert hostile * _ETAG_LINES * _ETAG_LINE > _RECORD_MAX
    with LocalServer() as srv:
        for n in range(hostile + 1):
            srv.routes[f"/{n}/app.aci.asc"] = reply(signature)
            srv.routes[f"/{n}/app.aci"] = (
                _fat_etag_reply(body, n) if n < hostile else reply(body, headers={"ETag": '"ok"'})
            )
        fetched = [_fetch(shared_dirs, srv.url(f"/{n}/app.aci")) for n in range(hostile)]
        assert [done.returncode for done in fetched] == [0] * hostile, fetched[-1].stderr
        plain = srv.url(f"/{hostile}/app.aci")
        after = _fetch(shared_dirs, plain)
    assert after.returncode == 0, f"root fetches stopped for good: {after.stderr}"
    assert after.stdout.strip() == fetched[0].stdout.strip()
    record = shared_dirs.data / "private" / "remotes.json"
    assert record.stat().st_size <= _RECORD_MAX
    assert json.loads(record.read_text())[plain][1] == '"ok"'


def test_a_view_in_the_index_cannot_answer_another_image_for_a_url_root_fetched(
    shared_dirs: ConfigDirs, keys: Keys, tmp_path: Path
) -> None:
    """Attempted by red team 10, held (by an accident, as red team 4 found for ID prefixes).
    The pin makes root's fetch child look a URL's key up in root's record, but the image it
    answers is still the index's ``by_key_prefix(key)``, whose prefix match is SQLite's alone.
    A member swaps the ``images`` table for red team 4's view, whose key column is a fresh
    random choice each time it is evaluated (the URL's key in the query's WHERE, the other
    signed image's for the answer). Every fetch child's open runs the schema script, whose
    ``CREATE INDEX IF NOT EXISTS`` fails on a view, so each fetch is refused naming the
    index; none answers the other image. Were that open ever skipped, ``by_key_prefix``
    compares each answered row's key with the prefix again in Python (added after red
    team 10), so the view's second evaluation cannot answer another image."""
    from tests._https import LocalServer  # noqa: PLC0415
    from tests.integration._attacker import member  # noqa: PLC0415
    from tests.integration.test_attack_redteam4_store import _VIEW  # noqa: PLC0415

    subprocess.run(["bash", "scripts/setup-groups.sh"], check=True)
    trust_good_key(shared_dirs, keys, tmp_path)
    ids = {}
    with LocalServer() as srv:
        urls = serve_signed_acis(srv, keys, tmp_path, (NAME, "example.com/other"), '"e"')
        for name, url in urls.items():
            done = _fetch(shared_dirs, url)
            assert done.returncode == 0, done.stderr
            ids[name] = done.stdout.strip()
        db = shared_dirs.data / "cas/db/index.sqlite"
        made = member(
            "/usr/bin/python3", "-c", _VIEW, str(db), ids[NAME][:71], ids["example.com/other"][:71]
        )
        assert made.stdout.strip() == "VIEW"
        outcomes = {"right": 0, "other": 0, "refused": 0}
        for _ in range(20):
            done = rkt(
                shared_dirs, "--insecure-options=http", "fetch", "--full", "--pull-policy=new",
                urls[NAME],
            )  # fmt: skip
            if done.returncode != 0:
                outcomes["refused"] += 1
            else:
                outcomes["right" if done.stdout.strip() == ids[NAME] else "other"] += 1
    assert outcomes["other"] == 0, outcomes
    assert outcomes["refused"] > 0, outcomes  # the view was live: the fetches met it

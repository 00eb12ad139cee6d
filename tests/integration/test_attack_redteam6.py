"""Sixth red-team pass: what landed on main on 2026-12-02 (gc by directory fds, ``rkt image
list`` dropping in place for good, the lookup child's warnings relayed in its answer, the one
index transaction of ``rkt run``), attacked as a real member of group rkt
(``trustd-it-user``, through an unprivileged ``/bin/sh``).

Each test makes the attack, then asserts what trustd guarantees, counting outcomes (never
timing them). The docstrings say what was wrong where a hole was found.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ConfigDirs
from tests.integration._attacker import (
    UNPRIV_EXEC,
    as_member,
    member,
    member_popen,
    plant_endless_trigger,
    rkt_unhung,
    stop,
)
from tests.integration._registry import World, needs_registry_tools
from tests.integration.conftest import RKT, rkt
from trustd.unprivileged.privsep import fetch_identity
from trustd.unprivileged.privsep.drop import LOOKUP_DEADLINE

ESC = "\x1b"
# An unknown provenance field whose name clears root's screen, retitles its terminal and
# starts a line of its own that reads like trustd's.
_FIELD = ESC + "[2J" + ESC + "]0;owned" + "\x07" + "\nrun: signature verified by root's key"


def _sql(dirs: ConfigDirs, statement: str, *params: str) -> None:
    """``statement`` on the shared index, as the member, with ``?`` parameters."""
    script = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
        "c.execute(sys.argv[2], sys.argv[3:])"
    )
    db = str(dirs.data / "cas/db/index.sqlite")
    member("/usr/bin/python3", "-c", script, db, statement, *params)


def _forged_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("run: signature verified")]


def test_a_hostile_provenance_field_name_is_printed_escaped_by_image_list(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """Root's ``rkt image list`` drops to the fetch identity in its own process and lists
    there; a row whose provenance the decoder refuses is skipped with a warning. That warning
    went to root's terminal as the decoder wrote it, and the decoder names the unknown field
    as stored: a member's field name drove root's terminal (escape sequences) and printed a
    line of its own. The warning is now printed with control characters escaped."""
    provenance = '{"signers": [], "insecure": false, "verified_at": "x", "%s": 1}'
    _sql(
        shared_dirs,
        "UPDATE images SET provenance = ? WHERE key = ?",
        provenance % _FIELD.encode("unicode-escape").decode().replace("\\x", "\\u00"),
        image[:71],
    )
    listed = rkt(shared_dirs, "image", "list")
    assert listed.returncode == 0, listed.stderr
    assert "unknown field" in listed.stderr  # the row was met and refused
    assert ESC not in listed.stderr and "\x07" not in listed.stderr
    assert not _forged_lines(listed.stderr), listed.stderr


# Format characters instead of controls: a right-to-left override makes the terminal show
# "run: ... exe.gpj" reversed, and a line separator starts a line of the member's own on
# terminals that honour it (the session after red team 6: ``printable`` left both as written).
_BIDI = "image\u202egpj.exe\u2028run: signature verified by the root key\u2066"


@pytest.mark.parametrize(
    ("message", "raw"),
    [(_FIELD.replace("'", ""), (ESC, "\x07")), (_BIDI, ("\u202e", "\u2028", "\u2066"))],
    ids=["escape sequence", "bidi override and line separator"],
)
def test_a_trigger_raising_terminal_text_is_printed_escaped_by_run(
    shared_dirs: ConfigDirs, image: str, message: str, raw: tuple[str, ...]
) -> None:
    """The lookup child stamps the image's last use in the group's index; a trigger the
    member made there aborts that update with a message of the member's choosing. The error
    crossed back to root, which printed it (``run: store index ...: <message>``) as written:
    the member drove root's terminal. Root's error report now escapes every character that is
    not printable (controls, format characters, separators) in each line of a message and
    hint."""
    _sql(
        shared_dirs,
        f"CREATE TRIGGER stamp BEFORE UPDATE ON images BEGIN SELECT RAISE(ABORT, '{message}'); END",
    )
    refused = rkt(shared_dirs, "run", "--net=none", "--stage1-name=fly", image)
    assert refused.returncode == 254
    assert "gpj.exe" in refused.stderr or "owned" in refused.stderr  # the message was met
    assert not [char for char in raw if char in refused.stderr], refused.stderr
    assert not _forged_lines(refused.stderr), refused.stderr


def _endless_trigger(dirs: ConfigDirs) -> None:
    """The lookup child's last-use stamp computes for ever inside its one transaction (a view
    in the table's place is refused at open by the schema script; a trigger on the real
    table is not)."""
    plant_endless_trigger(dirs, "UPDATE")


def _fifo_index(dirs: ConfigDirs) -> None:
    db = dirs.data / "cas/db/index.sqlite"
    member("sh", "-c", f'rm -f "{db}" "{db}-wal" "{db}-shm" && mkfifo -m 0660 "{db}"')


@pytest.mark.parametrize(
    ("attack", "reason"),
    [(_endless_trigger, "SQLite steps"), (_fifo_index, "is not a regular file")],
    ids=["endless trigger", "fifo"],
)
def test_a_hostile_index_cannot_hang_run_without_bound(
    shared_dirs: ConfigDirs, image: str, attack: Callable[[ConfigDirs], None], reason: str
) -> None:
    """``rkt run IMAGE-ID`` resolves the ID in the unprivileged lookup child, in one index
    transaction, and stamps the image's last use there; root read the child's answer with
    no bound. A trigger whose body never ends (the child computes for ever, holding the
    index's write lock) hung root's run, and anything waiting for it, for good. Root now
    gives the lookup child a deadline (longer than SQLite's 30 s wait for the index lock),
    kills it past that and refuses with the reason; since red team 7 the index's step budget
    stops the trigger first (tests/unit/store/test_index_budget.py), the deadline staying for
    what is no SQLite step. A FIFO in the index's place is refused before SQLite opens it
    (were it swapped in after that check, the deadline ends it)."""
    attack(shared_dirs)
    refused = rkt_unhung(
        shared_dirs, "run", "--net=none", "--stage1-name=fly", image, within=LOOKUP_DEADLINE + 60
    )
    assert refused.returncode == 254, refused.stderr
    assert reason in refused.stderr


# Holds the index's write lock (a write transaction left open) until its stdin closes.
_HOLD = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN IMMEDIATE")
c.execute("UPDATE meta SET v = v")
print("HELD", flush=True)
sys.stdin.read()
"""
# What the fetch identity or the member may reach of another process through /proc.
_PROBE = """
import os, sys
pid = sys.argv[1]
reached = []
for name in ("mem", "environ", "fd/0", "cwd", "root"):  # cmdline is everyone's
    path = f"/proc/{pid}/{name}"
    try:
        if name in ("cwd", "root", "fd/0"):
            os.listdir(path) if name != "fd/0" else os.stat(path)
        else:
            with open(path, "rb") as f:
                f.read(1) if name != "mem" else f.seek(0)
        reached.append(name)
    except OSError:
        pass
print(",".join(reached) or "NOTHING")
"""


def test_the_process_image_list_drops_in_is_not_reachable_through_proc(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """``rkt image list`` as root drops to the fetch identity in its own process (no child):
    whatever root held before (its environment, its terminal, its memory, its cwd) stays in
    that process. The uid change makes the kernel clear the dumpable flag, and nothing sets
    it back, so neither the fetch identity (whose uid the process now has) nor the member
    can open its ``mem``, ``environ``, fds, cwd or root through ``/proc`` while it runs.
    Held open by the member's write transaction on the index (the listing waits for it)."""
    db = str(shared_dirs.data / "cas/db/index.sqlite")
    holder = member_popen("/usr/bin/python3", "-c", _HOLD, db, stdin=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "HELD"
        listing = subprocess.Popen(
            [RKT, *shared_dirs.flags(), "image", "list"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "TRUSTD_SECRET": "root's"},
        )
        try:
            fetch_uid = pwd.getpwnam(fetch_identity().user).pw_uid
            status = Path(f"/proc/{listing.pid}/status")
            while listing.poll() is None:  # until the listing has dropped (it then waits)
                uids = next(ln for ln in status.read_text().splitlines() if ln.startswith("Uid"))
                if uids.split()[1:] == [str(fetch_uid)] * 4:
                    break
            assert listing.poll() is None, "the listing ended before it was probed"
            probes = {
                "member": as_member("/usr/bin/python3", "-c", _PROBE, str(listing.pid)),
                "fetch identity": subprocess.run(
                    [
                        "setpriv",
                        f"--reuid={fetch_uid}",
                        "--regid=rkt",
                        "--init-groups",
                        "--",
                        *UNPRIV_EXEC,
                        "/usr/bin/python3",
                        "-c",
                        _PROBE,
                        str(listing.pid),
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                    timeout=60,
                ),
            }
        finally:
            listing.kill()
            listing.communicate(timeout=60)
    finally:
        stop(holder)
    for who, probe in probes.items():
        assert probe.returncode == 0, (who, probe.stderr)
        assert probe.stdout.strip() == "NOTHING", (who, probe.stdout)


# Holds an exclusive flock on each named file (made 0660 in the group's cas/tmp, as a fetch
# makes it) until its stdin closes.
_FLOCK = """
import fcntl, os, sys
held = []
for path in sys.argv[1:]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o660)
    os.fchmod(fd, 0o660)
    fcntl.flock(fd, fcntl.LOCK_EX)
    held.append(fd)
print("HELD", flush=True)
sys.stdin.read()
"""


@needs_registry_tools
def test_a_member_holding_a_layers_scratch_lock_cannot_hang_roots_docker_fetch(
    shared_dirs: ConfigDirs, world: World
) -> None:
    """The member reads the image's layer digests from the registry (as anyone can), makes
    their scratch files in cas/tmp and holds each one's flock; root's ``rkt fetch`` of the
    image used to wait for them for ever ("another rkt instance is downloading layer ...").
    A holder is now waited for only while its file keeps the download's own floor (fetch.d
    ``minRate``, here 64 KiB in 2 s): this one never writes, so the fetch refuses, names the
    file, and stores nothing."""
    import json  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    from trustd.unprivileged.docker._blobs import blob_path  # noqa: PLC0415

    url = f"http://{world.plain.host}/v2/busybox/manifests/latest"
    request = urllib.request.Request(
        url, headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        layers = [layer["digest"] for layer in json.load(answer)["layers"]]
    assert rkt(shared_dirs, "image", "list").returncode == 0  # the store exists
    floor = shared_dirs.local / "fetch.d"
    floor.mkdir(exist_ok=True)
    floor_doc = {"rktKind": "fetch", "rktVersion": "v1", "minRate": {"bytes": 65536, "seconds": 2}}
    (floor / "floor.json").write_text(json.dumps(floor_doc))
    (floor / "floor.json").chmod(0o644)
    tmp = shared_dirs.data / "cas/tmp"
    paths = [str(blob_path(tmp, d)) for d in layers]
    holder = member_popen("/usr/bin/python3", "-c", _FLOCK, *paths, stdin=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "HELD"
        fetch = [RKT, *shared_dirs.flags(), "--insecure-options=image,http", "fetch"]
        refused = subprocess.run(
            [*fetch, f"docker://{world.plain.host}/busybox:latest"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    finally:
        stop(holder)
    assert refused.returncode == 254, refused.stderr
    assert "another process holds its scratch file" in refused.stderr, refused.stderr
    assert "fuser" in refused.stderr
    listed = rkt(shared_dirs, "image", "list", "--format=json")
    assert listed.returncode == 0 and json.loads(listed.stdout or "[]") == []  # nothing stored

"""The fetch inspects an ACI while it downloads (issue #14: one pass over the data).

The inspection that runs on the arriving chunks must decide exactly what the inspection of
the finished file decides: the same image ID and manifest for a good archive, the same rule
for every hostile one (tests/unit/appc/test_aci_hostile.py), a resumed download's head
included. Over real HTTPS, a hostile archive stops the download early, and a download that
fails stops the inspection.
"""

from __future__ import annotations

import io
import os
import random
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest

from tests._aci import build_aci
from tests._https import LocalServer
from tests.conftest import ConfigDirs
from tests.unit.appc._archives import COMPRESS, inspect
from tests.unit.appc.test_aci_hostile import HOSTILE
from trustd.shared.appc.aci import AciError, AciInfo, AciLimits, Compression
from trustd.shared.errors import LocalStateError, TransportError
from trustd.shared.insecure import Insecure
from trustd.shared.keystore import Keystore
from trustd.shared.policy import load_effective
from trustd.shared.store import ImageStore
from trustd.unprivileged.fetch import FetchContext, FetchRequest, fetch_image, parse_image_ref
from trustd.unprivileged.fetch._inspect_feed import INSPECT_THREAD, FeedInspector


def fed(data: bytes, limits: AciLimits, seed: int, head: int = 0, tmp: Path | None = None) -> Any:
    """``data`` through a FeedInspector in random chunks (its first ``head`` bytes read back
    from a file, as a resumed download's are): the AciInfo, or the error it raised."""
    rng = random.Random(seed)  # noqa: S311 - chunk sizes, not secrets
    inspector = FeedInspector("test.aci", limits)
    fd = None
    if head:
        assert tmp is not None
        (tmp / "partial").write_bytes(data[:head])
        fd = os.open(tmp / "partial", os.O_RDONLY)
    try:
        inspector.start(fd, head)
        at = head
        while at < len(data):
            n = rng.choice((1, 7, 512, 4096, 16384, 65536, 300_000))
            inspector.feed(data[at : at + n])
            at += n
        return inspector.finish()
    except AciError as exc:
        inspector.abort()
        return exc
    finally:
        if fd is not None:
            os.close(fd)


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("compression", [Compression.NONE, Compression.GZIP])
def test_every_hostile_archive_is_refused_by_its_rule_while_it_arrives(
    case: str, compression: Compression
) -> None:
    build, rule, limits = HOSTILE[case]
    data = build()
    if compression is not Compression.NONE and not case.startswith(
        ("not-an-archive", "truncated-gz", "truncated-xz", "corrupt")
    ):
        data = COMPRESS[compression](data)
    with pytest.raises(AciError) as whole:
        inspect(data, limits)
    for seed in range(3):
        got = fed(data, limits, seed)
        assert isinstance(got, AciError), got
        assert got.rule == rule
        assert (got.reason, got.entry) == (whole.value.reason, whole.value.entry)


@pytest.mark.parametrize("compression", list(Compression))
def test_a_good_archive_gives_the_same_description_as_the_file_does(
    compression: Compression, tmp_path: Path
) -> None:
    files = {"b": os.urandom(300_000)}
    aci = build_aci(tmp_path / "a.aci", "example.com/one-pass", files=files, gz=False)
    data = COMPRESS[compression](aci.read_bytes())
    whole = inspect(data)
    for seed, head in ((0, 0), (1, 0), (2, 1), (3, 262), (4, len(data) // 2), (5, len(data))):
        got = fed(data, AciLimits(), seed, head, tmp_path)
        assert isinstance(got, AciInfo), got
        assert got == whole


def test_a_head_that_got_shorter_while_it_was_read_is_not_taken(tmp_path: Path) -> None:
    aci = build_aci(tmp_path / "a.aci", "example.com/one-pass", files={"b": os.urandom(50_000)})
    data = aci.read_bytes()
    (tmp_path / "partial").write_bytes(data[:1000])
    fd = os.open(tmp_path / "partial", os.O_RDONLY)
    inspector = FeedInspector("test.aci", AciLimits())
    try:
        inspector.start(fd, 20_000)  # more than the file holds now
        with pytest.raises(LocalStateError, match="got shorter while it was read"):
            inspector.feed(data[20_000:])
            inspector.finish()
    finally:
        inspector.abort()
        os.close(fd)


def _ctx(dirs: ConfigDirs) -> FetchContext:
    return FetchContext(
        ImageStore.open(dirs.data, create=True),
        Keystore(dirs.system, dirs.local),
        Insecure.IMAGE,  # no signature: the archive's own rules are what is tested
        load_effective(dirs.system, dirs.local),
    )


def _streaming(body: bytes, sent: list[int], declared: int | None = None) -> Any:
    """200 with the body written 64 KiB at a time; ``sent`` counts what went out."""

    def handle(req: Any) -> None:
        req.send_response(200)
        req.send_header("Content-Length", str(declared or len(body)))
        req.send_header("Connection", "close")
        req.end_headers()
        try:
            for at in range(0, len(body), 1 << 16):
                req.wfile.write(body[at : at + (1 << 16)])
                sent[0] += len(body[at : at + (1 << 16)])
        except OSError:
            return  # the client stopped reading, as it should

    return handle


def test_a_hostile_archive_stops_the_download_where_it_breaks_a_rule(
    https_server: LocalServer, config_dirs: ConfigDirs
) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        root = tarfile.TarInfo("rootfs")
        root.type = tarfile.DIRTYPE
        tar.addfile(root)
        tar.addfile(tarfile.TarInfo("rootfs/../../etc/cron.d/x"))  # breaks a rule at once
        blob = tarfile.TarInfo("rootfs/blob")
        blob.size = 64 << 20
        tar.addfile(blob, io.BytesIO(bytes(blob.size)))
    body, sent = buf.getvalue(), [0]
    https_server.routes["/hostile.aci"] = _streaming(body, sent)
    with pytest.raises(AciError) as info:
        fetch_image(
            FetchRequest(parse_image_ref(https_server.url("/hostile.aci"))), _ctx(config_dirs)
        )
    assert info.value.rule == "dotdot"
    assert sent[0] < len(body) // 2  # the rest of the 64 MiB was never asked for
    assert ImageStore.open(config_dirs.data).images() == []


def test_a_download_cut_short_stops_the_inspection(
    https_server: LocalServer, config_dirs: ConfigDirs, tmp_path: Path
) -> None:
    aci = build_aci(tmp_path / "a.aci", "example.com/cut", files={"b": os.urandom(400_000)})
    body = aci.read_bytes()
    https_server.routes["/cut.aci"] = _streaming(body[:200_000], [0], declared=len(body))
    with pytest.raises(TransportError, match=r"closed after 200000 of the \d+ bytes"):
        fetch_image(FetchRequest(parse_image_ref(https_server.url("/cut.aci"))), _ctx(config_dirs))
    # the inspection thread ended (the server's own handler thread may still be closing)
    assert not [t for t in threading.enumerate() if t.name == INSPECT_THREAD]
    assert ImageStore.open(config_dirs.data).images() == []

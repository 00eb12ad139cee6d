"""Pass 2 writes the ACI itself and accounts for it as it writes (issue #12, fetch speed).

The fetch side admits its own conversion from that account instead of reading the ACI back,
and root compares the account's sha512 with the image ID. So two properties must hold for
any input: the bytes are exactly what ``tarfile``'s PAX stream writer would write for the
same members (so images stored before keep their IDs), and the account says exactly what an
inspection of those bytes establishes.
"""

from __future__ import annotations

import io
import string
import tarfile
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.docker._layers import E, layer, openers
from trustd.shared.appc.aci import AciLimits, inspect_aci
from trustd.shared.docker._squash_tarout import _TarOut
from trustd.shared.docker.convert import Origin, convert
from trustd.shared.errors import RemoteLiedError

ORIGIN = Origin(name="example.com/account", tag="1")
CONFIG = b'{"os": "linux", "architecture": "amd64", "config": {}}'

# names that force every header form: plain ustar, long (pax path), non-ASCII (pax, utf-8),
# undecodable (surrogateescape), and long link targets
_SEG = st.one_of(
    st.sampled_from(["a", "b", "etc", "x y", "é", "日本", "\udcff", "z" * 120]),
    st.text(string.ascii_lowercase, min_size=1, max_size=8),
)
_PATH = st.lists(_SEG, min_size=1, max_size=3).map("/".join)


@st.composite
def _member(draw: st.DrawFn) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(draw(_PATH))
    kind = draw(
        st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE])
    )
    info.type = kind
    info.mode = draw(st.sampled_from([0o644, 0o755, 0o4755, 0o2711, 0o6777, 0o1777, 0]))
    info.uid = draw(st.sampled_from([0, 1000, 65534, 2**21, 2**24]))  # 2**21+: base-256/pax
    info.gid = draw(st.sampled_from([0, 100, 2**22]))
    info.mtime = draw(st.sampled_from([0, 1_700_000_000, 2**33, 2**40]))
    info.uname = info.gname = ""
    data = b""
    if kind == tarfile.REGTYPE:
        data = draw(st.binary(max_size=1300) | st.sampled_from([b"", bytes(512), bytes(10_240)]))
        info.size = len(data)
    elif kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = draw(_PATH)
    return info, data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_member(), max_size=12))
def test_the_writer_writes_what_tarfiles_pax_stream_writer_writes(
    members: list[tuple[tarfile.TarInfo, bytes]],
) -> None:
    ours, theirs = io.BytesIO(), io.BytesIO()
    tar = _TarOut(ours)
    with tarfile.open(fileobj=theirs, mode="w|", format=tarfile.PAX_FORMAT) as ref:
        for info, data in members:
            ref.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
            tar.add(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    account = tar.close()
    assert ours.getvalue() == theirs.getvalue()
    assert account.size == len(theirs.getvalue())
    assert account.entry_count == len(members)


def test_a_source_cut_short_is_an_error_not_a_short_file() -> None:
    info = tarfile.TarInfo("rootfs/f")
    info.size = 100
    try:
        _TarOut(io.BytesIO()).add(info, io.BytesIO(b"x" * 99))
    except tarfile.ReadError as exc:
        assert "unexpected end of data" in str(exc)
    else:
        raise AssertionError("a short source was written as a file")


_NAME = st.lists(
    st.sampled_from(["a", "b", "bin", "é", "x" * 110, ".wh.a"]), min_size=1, max_size=3
)
_ENTRY = st.builds(
    E,
    _NAME.map("/".join),
    st.sampled_from(["file", "dir", "symlink", "hardlink"]),
    st.binary(max_size=700),
    st.sampled_from(["a", "b", "bin/a", "../x", "/a", "a/b"]),
    st.sampled_from([0o644, 0o4755, 0o2755, 0o6711, 0o755]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(_ENTRY, max_size=6), min_size=1, max_size=3), st.booleans())
def test_the_account_is_what_inspecting_the_written_aci_establishes(
    layers: list[list[E]], named: bool
) -> None:
    blobs = [layer(*entries, compress="none") for entries in layers]
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "download-aci"
        with path.open("w+b") if named else io.BytesIO() as out:
            try:
                converted = convert(openers(*blobs), CONFIG, ORIGIN, out, label="prop")
            except RemoteLiedError:
                return
            out.flush()
            out.seek(0)
            written = out.read()
    inspected = inspect_aci(io.BytesIO(written), limits=AciLimits(), name="prop")
    assert converted.info("prop") == inspected
    assert converted.image_id == inspected.image_id
    assert converted.account.size == len(written)

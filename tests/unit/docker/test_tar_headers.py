"""The squash's lean header reader gives exactly tarfile's members (issue #12, fetch speed).

Archives are generated in every format tarfile writes (ustar, GNU, pax, with long names,
non-ASCII and undecodable names, global pax headers, base-256 numbers, v7 directories), then
optionally damaged (bytes overwritten anywhere, or the file cut short). For each, the
sequence of members, the error raised and where tarfile stood must be the same whether the
members are read by ``tar.next()`` or by :func:`next_member`.
"""

from __future__ import annotations

import io
import tarfile
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustd.shared.appc._aci_paths import Refused
from trustd.shared.appc._aci_scan import checked_tarinfo, corrupt_errors
from trustd.shared.docker._headers import next_member

_SEG = st.one_of(
    st.sampled_from(["a", "b", "dir/", "é", "\udcfe", "x" * 99, "y" * 150, "./", ".wh.a"]),
    st.text("abc/.", min_size=1, max_size=6),
)
_PATH = st.lists(_SEG, min_size=1, max_size=3).map("/".join)
_TYPES = [tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE]
_TYPES += [tarfile.FIFOTYPE, tarfile.CHRTYPE, tarfile.CONTTYPE]


@st.composite
def _archive(draw: st.DrawFn) -> bytes:
    fmt = draw(st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]))
    glob = {"comment": "g"} if fmt == tarfile.PAX_FORMAT and draw(st.booleans()) else None
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt, pax_headers=glob) as tar:
        for _ in range(draw(st.integers(0, 8))):
            info = tarfile.TarInfo(draw(_PATH))
            info.type = draw(st.sampled_from(_TYPES))
            info.mode = draw(st.sampled_from([0o644, 0o4755, 0o777]))
            info.uid = draw(st.sampled_from([0, 1000, 2**21 + 1]))
            info.mtime = draw(st.sampled_from([0, 1_700_000_000]))
            info.uname = draw(st.sampled_from(["", "root", "ü"]))
            if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = draw(_PATH)
            data = b""
            if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE):
                data = draw(st.binary(max_size=1100))
                info.size = len(data)
            try:
                tar.addfile(info, io.BytesIO(data) if data else None)
            except ValueError:  # a name this format cannot hold: leave it out
                continue
    out = bytearray(raw.getvalue())
    for _ in range(draw(st.integers(0, 3))):  # damage: overwrite a few bytes anywhere
        if out:
            at = draw(st.integers(0, len(out) - 1))
            out[at : at + 1] = bytes([draw(st.integers(0, 255))])
    if draw(st.booleans()):
        out = out[: draw(st.integers(0, len(out)))]
    return bytes(out)


_FIELDS: tuple[str, ...] = ("name", "type", "mode", "uid", "gid", "size", "mtime", "chksum")
_FIELDS += ("linkname", "uname", "gname", "devmajor", "devminor", "offset", "offset_data")
_FIELDS += ("pax_headers",)
_ERRORS: tuple[type[BaseException], ...] = (Refused, *corrupt_errors())


def _read(data: bytes, lean: bool) -> tuple[list[tuple[Any, ...]], str, int]:
    members: list[tuple[Any, ...]] = []
    error = ""
    offset = -1
    try:
        with tarfile.open(
            fileobj=io.BytesIO(data),
            mode="r:",
            tarinfo=checked_tarinfo(1 << 20),
            errors="surrogateescape",
        ) as tar:
            while (member := (next_member(tar) if lean else tar.next())) is not None:
                members.append((*(getattr(member, f) for f in _FIELDS), member.sparse))
                tar.members.clear()  # type: ignore[attr-defined]
            offset = tar.offset
    except _ERRORS as exc:
        error = f"{type(exc).__name__}: {exc}"
    return members, error, offset


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_archive())
def test_the_lean_reader_reads_what_tarfile_reads(data: bytes) -> None:
    assert _read(data, lean=True) == _read(data, lean=False)


def test_the_plain_headers_of_a_layer_are_read_by_the_lean_path() -> None:
    """Not vacuous: a plain ustar member after the first is built by the lean reader (a
    tarfile read would have appended it to ``tar.members``)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("a", "b", "c"):
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))
    with tarfile.open(fileobj=io.BytesIO(raw.getvalue()), mode="r:") as tar:
        first = next_member(tar)
        assert first is not None and first.name == "a"
        tar.members.clear()  # type: ignore[attr-defined]
        second = next_member(tar)
        assert second is not None and second.name == "b" and second.offset_data == 1536
        assert tar.members == []  # type: ignore[attr-defined]

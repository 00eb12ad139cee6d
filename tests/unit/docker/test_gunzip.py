"""The layer reader's gunzip equals gzip.GzipFile: the same bytes, or both refuse."""

from __future__ import annotations

import gzip
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from trustd.shared.appc._aci_scan import corrupt_errors
from trustd.shared.docker._layers import Gunzip


def _gzipfile(blob: bytes) -> bytes | str:
    try:
        return gzip.GzipFile(fileobj=io.BytesIO(blob), mode="rb").read()
    except corrupt_errors():
        return "refused"


def _ours(blob: bytes, n: int) -> bytes | str:
    reader, out = Gunzip(io.BytesIO(blob)), []
    try:
        while chunk := reader.read(n):
            assert len(chunk) <= n
            out.append(chunk)
    except corrupt_errors():
        return "refused"
    return b"".join(out)


def _member(data: bytes, level: int) -> bytes:
    return gzip.compress(data, compresslevel=level, mtime=0)


payloads = st.one_of(
    st.binary(max_size=3000),
    st.binary(max_size=40).map(lambda b: b * 20_000),  # highly compressible: many outputs
    st.integers(0, 400_000).map(bytes),
)


@settings(max_examples=150, deadline=None)
@given(
    members=st.lists(st.tuples(payloads, st.integers(0, 9)), min_size=1, max_size=3),
    padding=st.integers(0, 3),
    tail=st.sampled_from([b"", b"\x1f", b"\x1f\x8b", b"junk", b"\x00\x1f", b"\x00\x00"]),
    cut=st.one_of(st.none(), st.integers(0, 40)),
    flip=st.one_of(st.none(), st.integers(0, 10_000)),
    n=st.sampled_from([1, 512, 10240, 1 << 20]),
)
def test_same_bytes_or_both_refuse(
    members: list[tuple[bytes, int]],
    padding: int,
    tail: bytes,
    cut: int | None,
    flip: int | None,
    n: int,
) -> None:
    blob = bytearray(b"".join(_member(d, lvl) + bytes(padding) for d, lvl in members) + tail)
    if cut is not None:
        del blob[len(blob) - cut :]  # cut short: in a trailer, a header, or the data
    if flip is not None and blob:
        blob[flip % len(blob)] ^= 0x41  # a damaged header, data, CRC or length
    if n == 1 and len(blob) > 20_000:
        n = 512  # byte-at-a-time over big blobs only slows the test
    ours, theirs = _ours(bytes(blob), n), _gzipfile(bytes(blob))
    if ours == "refused" and theirs != "refused":
        # zlib follows RFC 1952 where GzipFile is lenient: a reserved flag bit set, or a
        # header CRC (FHCRC) that does not match, is refused; nothing else may differ
        assert any(b & 0xE2 for b in _flag_bytes(bytes(blob)))
        return
    assert ours == theirs


def _flag_bytes(blob: bytes) -> list[int]:
    """The FLG byte of every place a member could start (any gzip magic in the blob)."""
    return [blob[i + 3] for i in range(len(blob) - 3) if blob[i : i + 2] == b"\x1f\x8b"]


def test_a_member_is_read_across_many_raw_pieces() -> None:
    """A member larger than one raw read (256 KiB) and a second member after it."""
    first = bytes(range(256)) * 8000  # 2 MB, little compression
    blob = _member(first, 1) + _member(b"second", 9)
    assert _ours(blob, 1 << 20) == first + b"second" == _gzipfile(blob)


def test_an_empty_blob_is_no_bytes_and_a_cut_member_refused() -> None:
    """GzipFile reads an empty blob as empty; a member cut anywhere is refused by both."""
    assert _ours(b"", 512) == b"" == _gzipfile(b"")
    member = _member(b"\x00\x00", 0)
    for cut in range(1, len(member)):
        assert _ours(member[:cut], 512) == "refused" == _gzipfile(member[:cut])

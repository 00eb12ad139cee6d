"""The PCR file ``tpm2_checkquote -f`` reads, exactly as ``tpm2_quote -o`` writes it.

tpm2-tools dumps the C structures in host byte order (little-endian on every platform trustd
runs on): a ``TPML_PCR_SELECTION`` (UINT32 count, then 16 ``TPMS_PCR_SELECTION`` of
UINT16 hash, UINT8 sizeofSelect, BYTE pcrSelect[4], one pad byte), a UINT32 number of
``TPML_DIGEST`` blocks, then each block (UINT32 count, 8 ``TPM2B_DIGEST`` of UINT16 size and
BYTE buffer[64]). Values follow the selection order: bank by bank, PCR index ascending.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from trustd.measure.errors import MalformedAttestationFileError

ALG_IDS: Final = {"sha1": 0x0004, "sha256": 0x000B, "sha384": 0x000C, "sha512": 0x000D}
_ALG_NAMES: Final = {v: k for k, v in ALG_IDS.items()}
_SIZES: Final = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}
_SEL_ENTRIES: Final = 16
_SEL_SIZE: Final = 4 + _SEL_ENTRIES * 8
_DIGESTS_PER_LIST: Final = 8
_LIST_SIZE: Final = 4 + _DIGESTS_PER_LIST * 66
_MAX_LISTS: Final = 64
MAX_PCR_FILE: Final = _SEL_SIZE + 4 + _MAX_LISTS * _LIST_SIZE


@dataclass(frozen=True, slots=True)
class PcrFile:
    """Selected PCRs per bank (in file order) and their values, flattened in selection order."""

    selection: tuple[tuple[str, tuple[int, ...]], ...]
    values: tuple[bytes, ...]

    def value_map(self) -> dict[tuple[str, int], bytes]:
        keys = [(bank, pcr) for bank, pcrs in self.selection for pcr in pcrs]
        return dict(zip(keys, self.values, strict=True))


def _bad(what: str) -> MalformedAttestationFileError:
    return MalformedAttestationFileError(
        f"quote.pcrs: {what}",
        hint="the PCR file must be written by tpm2_quote -o or rkt attest quote",
    )


def encode_selection(selection: tuple[tuple[str, tuple[int, ...]], ...]) -> bytes:
    if len(selection) > _SEL_ENTRIES:
        raise ValueError("too many banks")
    out = bytearray(struct.pack("<I", len(selection)))
    for bank, pcrs in selection:
        bits = bytearray(4)
        for pcr in pcrs:
            if not 0 <= pcr < 24:
                raise ValueError(f"PCR {pcr} out of range 0-23")
            bits[pcr // 8] |= 1 << (pcr % 8)
        out += struct.pack("<HB4sx", ALG_IDS[bank], 3, bytes(bits))
    out += bytes(_SEL_SIZE - len(out))
    return bytes(out)


def encode_pcr_file(
    selection: tuple[tuple[str, tuple[int, ...]], ...], chunks: tuple[tuple[bytes, ...], ...]
) -> bytes:
    """Selection, then one ``TPML_DIGEST`` per chunk (as the TPM returned them, ≤ 8 each)."""
    out = bytearray(encode_selection(selection))
    out += struct.pack("<I", len(chunks))
    for chunk in chunks:
        if len(chunk) > _DIGESTS_PER_LIST:
            raise ValueError("a TPML_DIGEST holds at most 8 values")
        block = bytearray(struct.pack("<I", len(chunk)))
        for value in chunk:
            block += struct.pack("<H", len(value)) + value.ljust(64, b"\0")
        out += block.ljust(_LIST_SIZE, b"\0")
    return bytes(out)


def _decode_selection(data: bytes) -> tuple[tuple[str, tuple[int, ...]], ...]:
    (count,) = struct.unpack_from("<I", data, 0)
    if count > _SEL_ENTRIES:
        raise _bad(f"selection count {count} exceeds {_SEL_ENTRIES}")
    banks: list[tuple[str, tuple[int, ...]]] = []
    for i in range(count):
        alg, size, bits = struct.unpack_from("<HB4s", data, 4 + 8 * i)
        if alg not in _ALG_NAMES:
            raise _bad(f"selection {i}: unknown hash algorithm 0x{alg:04x}")
        if size > 4:
            raise _bad(f"selection {i}: sizeofSelect {size} exceeds 4")
        pcrs = tuple(p for p in range(size * 8) if bits[p // 8] >> (p % 8) & 1)
        banks.append((_ALG_NAMES[alg], pcrs))
    return tuple(banks)


def _decode_values(data: bytes, offset: int, lists: int) -> list[tuple[int, bytes]]:
    values: list[tuple[int, bytes]] = []
    for n in range(lists):
        base = offset + n * _LIST_SIZE
        (count,) = struct.unpack_from("<I", data, base)
        if count > _DIGESTS_PER_LIST:
            raise _bad(f"digest list {n}: count {count} exceeds {_DIGESTS_PER_LIST}")
        for k in range(count):
            (size,) = struct.unpack_from("<H", data, base + 4 + 66 * k)
            if size > 64:
                raise _bad(f"digest list {n}, value {k}: size {size} exceeds 64")
            start = base + 6 + 66 * k
            values.append((size, data[start : start + size]))
    return values


def decode_pcr_file(data: bytes) -> PcrFile:
    """Parse a PCR file strictly: exact length, sizes that match each bank's hash."""
    if len(data) < _SEL_SIZE + 4 or len(data) > MAX_PCR_FILE:
        raise _bad(f"{len(data)} bytes is not a PCR file (at least {_SEL_SIZE + 4})")
    selection = _decode_selection(data)
    (lists,) = struct.unpack_from("<I", data, _SEL_SIZE)
    if len(data) != _SEL_SIZE + 4 + lists * _LIST_SIZE:
        raise _bad(f"{len(data)} bytes does not hold {lists} digest lists")
    values = _decode_values(data, _SEL_SIZE + 4, lists)
    expected = [bank for bank, pcrs in selection for _ in pcrs]
    if len(values) != len(expected):
        raise _bad(f"{len(values)} values for {len(expected)} selected PCRs")
    for (size, _), bank in zip(values, expected, strict=True):
        if size != _SIZES[bank]:
            raise _bad(f"a {bank} value of {size} bytes (expected {_SIZES[bank]})")
    return PcrFile(selection=selection, values=tuple(v for _, v in values))

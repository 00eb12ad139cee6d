"""The PCR file ``tpm2_quote -o`` writes and ``tpm2_checkquote -f`` reads (tpm2-tools).

tpm2-tools dumps its C structures as they sit in memory, in little-endian order:

* TPML_PCR_SELECTION, always 132 bytes: ``count`` (u32), then 16 TPMS_PCR_SELECTION slots of 8
  bytes each: ``hash`` (u16), ``sizeofSelect`` (u8), ``pcrSelect[4]``, one padding byte.
  Slots past ``count`` are unused.
* the number of TPML_DIGEST blocks that follow (u32, at most 32);
* that many TPML_DIGEST blocks, 532 bytes each: ``count`` (u32, at most 8), then 8 TPM2B_DIGEST
  slots of 66 bytes: ``size`` (u16) and a 64-byte buffer.

The digests, read block after block, are the values of the selected PCRs in selection order
(bank after bank, ascending PCR).
"""

from __future__ import annotations

from collections.abc import Sequence

from trustd.shared.attest._reader import Reader
from trustd.shared.attest._tpm2 import MAX_BANKS, SELECT_MAX, checked_selection, selected
from trustd.shared.attest.model import HashAlg, PcrSelection, PcrValues

STRUCTURE = "tpm2-tools PCR file"
SLOT = 8
SELECTION_SIZE = 4 + MAX_BANKS * SLOT
DIGESTS_PER_LIST = 8
DIGEST_SLOT = 2 + 64
LIST_SIZE = 4 + DIGESTS_PER_LIST * DIGEST_SLOT
MAX_LISTS = 32
MAX_SIZE = SELECTION_SIZE + 4 + MAX_LISTS * LIST_SIZE


def parse_pcr_file(data: bytes) -> PcrValues:
    reader = Reader(data, STRUCTURE, little=True)
    if len(data) < SELECTION_SIZE + 4:
        raise reader.fail(
            "pcrSelections", f"{len(data)} bytes is not a PCR file (at least {SELECTION_SIZE + 4})"
        )
    selection = _selection(
        Reader(reader.take(SELECTION_SIZE, "pcrSelections"), STRUCTURE, little=True)
    )
    lists = reader.u32("digestLists.count")
    if lists > MAX_LISTS:
        raise reader.fail("digestLists.count", f"{lists} TPML_DIGEST blocks, at most {MAX_LISTS}")
    if reader.remaining != lists * LIST_SIZE:
        raise reader.fail(
            "digestLists",
            f"{lists} digest lists need {lists * LIST_SIZE} bytes, the file has {reader.remaining}",
        )
    digests: list[bytes] = []
    for i in range(lists):
        digests.extend(
            _digest_list(
                Reader(reader.take(LIST_SIZE, f"digestLists[{i}]"), STRUCTURE, little=True), i
            )
        )
    return _assign(reader, selection, digests)


def _selection(reader: Reader) -> PcrSelection:
    count = reader.u32("pcrSelections.count")
    if count > MAX_BANKS:
        raise reader.fail("pcrSelections.count", f"selection count {count} exceeds {MAX_BANKS}")
    banks = []
    for i in range(count):
        slot = Reader(reader.take(SLOT, f"pcrSelections[{i}]"), STRUCTURE, little=True)
        alg_id = slot.u16(f"pcrSelections[{i}].hash")
        alg = HashAlg.from_id(alg_id)
        if alg is None:
            raise slot.fail(f"pcrSelections[{i}].hash", f"unknown hash algorithm 0x{alg_id:04x}")
        size = slot.u8(f"pcrSelections[{i}].sizeofSelect")
        if size > SELECT_MAX:
            raise slot.fail(f"pcrSelections[{i}].sizeofSelect", f"{size} is more than {SELECT_MAX}")
        banks.append((alg, selected(slot.take(SELECT_MAX, "pcrSelect")[:size])))
    return checked_selection(reader, "pcrSelections", banks)


def _digest_list(reader: Reader, index: int) -> list[bytes]:
    field = f"digestLists[{index}]"
    count = reader.u32(f"{field}.count")
    if count > DIGESTS_PER_LIST:
        raise reader.fail(f"{field}.count", f"count {count} exceeds {DIGESTS_PER_LIST}")
    out = []
    for j in range(count):
        size = reader.u16(f"{field}.digests[{j}].size")
        if size > 64:
            raise reader.fail(f"{field}.digests[{j}].size", f"{size} is more than 64")
        out.append(reader.take(64, f"{field}.digests[{j}].buffer")[:size])
    return out


def _assign(reader: Reader, selection: PcrSelection, digests: list[bytes]) -> PcrValues:
    wanted = list(selection.pcrs())
    if len(wanted) != len(digests):
        raise reader.fail("digestLists", f"{len(digests)} values for {len(wanted)} selected PCRs")
    banks: dict[HashAlg, list[tuple[int, bytes]]] = {}
    for (alg, index), value in zip(wanted, digests, strict=True):
        if len(value) != alg.size:
            raise reader.fail(
                "digestLists",
                f"PCR {index}: a {alg.label} value of {len(value)} bytes (expected {alg.size})",
            )
        banks.setdefault(alg, []).append((index, value))
    return PcrValues(tuple((alg, tuple(values)) for alg, values in banks.items()))


def encode_pcr_file(values: PcrValues, *, blocks: Sequence[int] = ()) -> bytes:
    """The inverse of :func:`parse_pcr_file`, byte for byte what tpm2-tools would write.

    ``blocks`` is how many digests each TPML_DIGEST holds, as the TPM returned them to
    TPM2_PCR_Read (tpm2_quote writes them so); by default, blocks of 8.
    """
    banks = values.banks
    if len(banks) > MAX_BANKS:
        raise ValueError(f"{len(banks)} banks, at most {MAX_BANKS}")
    out = bytearray(len(banks).to_bytes(4, "little"))
    for alg, pcrs in banks:
        bits = bytearray(SELECT_MAX)
        for index, _ in pcrs:
            if not 0 <= index < SELECT_MAX * 8:
                raise ValueError(f"PCR {index} out of range 0-{SELECT_MAX * 8 - 1}")
            bits[index // 8] |= 1 << (index % 8)
        size = max(3, max(((i // 8) + 1 for i, _ in pcrs), default=0))
        out += alg.value.to_bytes(2, "little") + bytes([size]) + bytes(bits) + b"\0"
    out += bytes(SELECTION_SIZE - len(out))
    flat = list(values.ordered())
    step = DIGESTS_PER_LIST
    sizes = list(blocks) or [min(step, len(flat) - i) for i in range(0, len(flat), step)]
    if any(not 0 <= n <= step for n in sizes) or sum(sizes) != len(flat):
        raise ValueError(f"blocks {sizes} do not split {len(flat)} values into TPML_DIGESTs of 8")
    out += len(sizes).to_bytes(4, "little")
    start = 0
    for n in sizes:
        out += n.to_bytes(4, "little")
        for value in flat[start : start + n]:
            out += len(value).to_bytes(2, "little") + value.ljust(64, b"\0")
        out += bytes(DIGEST_SLOT * (step - n))
        start += n
    return bytes(out)

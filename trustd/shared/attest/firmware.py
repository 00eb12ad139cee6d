"""The TCG binary firmware event log (``binary_bios_measurements``): parse and replay.

Two layouts, both little-endian (TCG PC Client Platform Firmware Profile):

* SHA-1 only (TPM 1.2 style): every event is ``pcrIndex`` (u32), ``eventType`` (u32),
  ``digest[20]``, ``eventDataSize`` (u32), ``event``.
* crypto agile (TCG2): the first event is in the SHA-1 layout, EV_NO_ACTION in PCR 0, and its
  data is the ``Spec ID Event03`` structure listing each bank and its digest size. Every later
  event is ``pcrIndex``, ``eventType``, ``count`` (u32), ``count`` x (``algorithmId`` (u16),
  digest of the size the Spec ID event gave), ``eventSize`` (u32), ``event``.

EV_NO_ACTION events never extend. A ``StartupLocality`` EV_NO_ACTION event in PCR 0, or an
EV_EFI_HCRTM_EVENT, sets PCR 0's starting value (last byte = locality, or 4 for an H-CRTM),
as a TPM does. Banks the Spec ID event lists but trustd does not know (SM3, SHA3) are skipped
over by their declared size and not replayed.
"""

from __future__ import annotations

from typing import Literal

from trustd.shared._dataclass import frozen
from trustd.shared.attest._reader import Reader
from trustd.shared.attest.cel import Replay
from trustd.shared.attest.errors import AttestFormatError
from trustd.shared.attest.model import MAX_PCRS, HashAlg

EV_NO_ACTION = 0x00000003
EV_EFI_HCRTM_EVENT = 0x80000010
SPEC_ID_03 = b"Spec ID Event03\0"
STARTUP_LOCALITY = b"StartupLocality\0"
MAX_ALGORITHMS = 16
STRUCTURE = "TCG event log"


@frozen
class FirmwareEvent:
    index: int
    pcr: int
    event_type: int
    digests: tuple[tuple[HashAlg, bytes], ...]  # banks trustd does not know are left out
    data: bytes


@frozen
class FirmwareLog:
    format: Literal["sha1", "tcg2"]
    banks: tuple[tuple[int, int], ...]  # (TPM_ALG_ID, digest size) from the Spec ID event
    events: tuple[FirmwareEvent, ...]


def parse_firmware_log(data: bytes) -> FirmwareLog:
    """Either layout; truncated, oversized or trailing bytes raise AttestFormatError."""
    reader = Reader(data, STRUCTURE, little=True)
    if not reader.remaining:
        raise reader.fail("(log)", "the log is empty")
    first = _sha1_event(reader, 0)
    if first.event_type == EV_NO_ACTION and first.data.startswith(SPEC_ID_03):
        banks = _spec_id(first)
        events = [first]
        while reader.remaining:
            events.append(_tcg2_event(reader, len(events), banks))
        return FirmwareLog("tcg2", banks, tuple(events))
    events = [first]
    while reader.remaining:
        events.append(_sha1_event(reader, len(events)))
    return FirmwareLog("sha1", ((HashAlg.SHA1.value, 20),), tuple(events))


def _header(reader: Reader, index: int) -> tuple[int, int]:
    """pcrIndex and eventType; only EV_NO_ACTION (which never extends) may name no real PCR."""
    pcr = reader.u32(f"event[{index}].pcrIndex")
    event_type = reader.u32(f"event[{index}].eventType")
    if pcr >= MAX_PCRS and event_type != EV_NO_ACTION:
        raise reader.fail(f"event[{index}].pcrIndex", f"PCR {pcr} does not exist")
    return pcr, event_type


def _sha1_event(reader: Reader, index: int) -> FirmwareEvent:
    pcr, event_type = _header(reader, index)
    digest = reader.take(20, f"event[{index}].digest")
    data = reader.take(reader.u32(f"event[{index}].eventDataSize"), f"event[{index}].event")
    return FirmwareEvent(index, pcr, event_type, ((HashAlg.SHA1, digest),), data)


def _spec_id(event: FirmwareEvent) -> tuple[tuple[int, int], ...]:
    """The Spec ID Event03 data: which banks the log carries and their digest sizes."""
    if event.pcr != 0 or any(event.digests[0][1]):
        raise AttestFormatError(STRUCTURE, "event[0]", "Spec ID event not in PCR 0 or not zero")
    reader = Reader(event.data, "TCG Spec ID event", little=True)
    reader.take(16 + 4 + 4, "signature..uintnSize")
    count = reader.u32("numberOfAlgorithms")
    if not 0 < count <= MAX_ALGORITHMS:
        raise reader.fail("numberOfAlgorithms", f"{count}, must be 1..{MAX_ALGORITHMS}")
    banks: dict[int, int] = {}
    for i in range(count):
        alg_id = reader.u16(f"digestSizes[{i}].algorithmId")
        size = reader.u16(f"digestSizes[{i}].digestSize")
        known = HashAlg.from_id(alg_id)
        if alg_id in banks or (known is not None and size != known.size) or not 0 < size <= 64:
            raise reader.fail(f"digestSizes[{i}]", f"bad bank 0x{alg_id:04x} of {size} bytes")
        banks[alg_id] = size
    reader.take(reader.u8("vendorInfoSize"), "vendorInfo")
    reader.end()
    return tuple(banks.items())


def _tcg2_event(reader: Reader, index: int, banks: tuple[tuple[int, int], ...]) -> FirmwareEvent:
    field = f"event[{index}]"
    pcr, event_type = _header(reader, index)
    count = reader.u32(f"{field}.digests.count")
    if count > len(banks):
        raise reader.fail(
            f"{field}.digests.count", f"{count} digests, the log has {len(banks)} banks"
        )
    sizes = dict(banks)
    digests: dict[int, bytes] = {}
    for i in range(count):
        alg_id = reader.u16(f"{field}.digests[{i}].hashAlg")
        if alg_id not in sizes or alg_id in digests:
            raise reader.fail(f"{field}.digests[{i}].hashAlg", f"bank 0x{alg_id:04x} unexpected")
        digests[alg_id] = reader.take(sizes[alg_id], f"{field}.digests[{i}].digest")
    data = reader.take(reader.u32(f"{field}.eventSize"), f"{field}.event")
    known = tuple(
        (alg, d) for alg_id, d in digests.items() if (alg := HashAlg.from_id(alg_id)) is not None
    )
    return FirmwareEvent(index, pcr, event_type, known, data)


def replay_firmware_log(log: FirmwareLog) -> Replay:
    """Final PCR values per bank, for every PCR some event extended."""
    pcrs: Replay = {}
    start: dict[int, int] = {}  # PCR -> last byte of its starting value
    for event in log.events:
        if event.pcr == 0 and not any(0 in bank for bank in pcrs.values()):
            locality = _locality(event)
            if locality is not None:
                start[0] = locality
        if event.event_type == EV_NO_ACTION:
            continue
        for alg, digest in event.digests:
            bank = pcrs.setdefault(alg, {})
            initial = bytes(alg.size - 1) + bytes([start.get(event.pcr, 0)])
            bank[event.pcr] = alg.extend(bank.get(event.pcr, initial), digest)
    return pcrs


def _locality(event: FirmwareEvent) -> int | None:
    if event.event_type == EV_EFI_HCRTM_EVENT:
        return 4
    if event.event_type == EV_NO_ACTION and event.data.startswith(STARTUP_LOCALITY):
        if len(event.data) != len(STARTUP_LOCALITY) + 1:
            raise AttestFormatError(
                STRUCTURE, f"event[{event.index}].event", "StartupLocality data is not 17 bytes"
            )
        return event.data[-1]
    return None

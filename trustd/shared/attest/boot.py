"""Boot appraisal: the firmware log against a verified quote and the verifier policy's ``[boot]``.

1. ``boot-replay``: the firmware log (``binary_bios_measurements``) replays to the quoted
   PCRs 0-7 of every quoted bank (a PCR it never extends must be zero; PCR 0 starts at the
   locality a StartupLocality or H-CRTM event gives, see :mod:`trustd.shared.attest.firmware`).
2. ``boot-reference``: in the policy's bank, PCRs 0-7 equal the policy's reference values and
   the replay of its golden log (both when both are given).
3. ``secure-boot``: the SecureBoot variable measured into PCR 7 as an
   EV_EFI_VARIABLE_DRIVER_CONFIG event (UEFI_VARIABLE_DATA: GUID, name length, data length,
   UTF-16 name, data) is 1 (enabled) or 0 / absent (disabled); a log without that event says
   nothing, which a policy asking for a state refuses.

Only values that passed step 1 against a verified quote are compared in step 2, so a log
cannot vouch for PCRs the TPM did not sign.
"""

from __future__ import annotations

import hmac
import struct
import uuid
from pathlib import Path
from typing import Literal

from trustd.shared._dataclass import frozen
from trustd.shared.attest.cel import Replay
from trustd.shared.attest.errors import QuoteError
from trustd.shared.attest.firmware import FirmwareLog, parse_firmware_log, replay_firmware_log
from trustd.shared.attest.model import HashAlg
from trustd.shared.attest.policy import BOOT_PCRS, BootPolicy
from trustd.shared.attest.verified import VerifiedQuote
from trustd.shared.attest.verifier import check_replay
from trustd.shared.errors import UserError

EV_EFI_VARIABLE_DRIVER_CONFIG = 0x80000001
EFI_GLOBAL_VARIABLE = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
SecureBoot = Literal["enabled", "disabled", "unknown"]
_GOLDEN_MAX = 16 * 1024 * 1024


@frozen
class BootAppraisal:
    """What the verified firmware log says about the boot environment."""

    pcrs: dict[HashAlg, dict[int, bytes]]  # quoted PCRs 0-7 the log replays to
    secure_boot: SecureBoot
    events: int

    def as_json(self) -> dict[str, object]:
        return {
            "secure_boot": self.secure_boot,
            "events": self.events,
            "pcrs": {
                alg.label: {str(i): v.hex() for i, v in sorted(values.items())}
                for alg, values in self.pcrs.items()
            },
        }


def boot_pcrs(replayed: Replay) -> dict[HashAlg, dict[int, bytes]]:
    """PCRs 0-7 of a replay, per bank; a PCR the log never extends is zero."""
    return {
        alg: {i: values.get(i, bytes(alg.size)) for i in BOOT_PCRS}
        for alg, values in replayed.items()
    }


def secure_boot_state(log: FirmwareLog) -> SecureBoot:
    """The last SecureBoot variable the firmware measured into PCR 7."""
    state: SecureBoot = "unknown"
    for event in log.events:
        if event.pcr != 7 or event.event_type != EV_EFI_VARIABLE_DRIVER_CONFIG:
            continue
        if len(event.data) < 32:
            continue
        guid = uuid.UUID(bytes_le=event.data[:16])
        name_len, data_len = struct.unpack_from("<QQ", event.data, 16)
        if guid != EFI_GLOBAL_VARIABLE or 32 + 2 * name_len + data_len != len(event.data):
            continue
        name = event.data[32 : 32 + 2 * name_len].decode("utf-16-le", "replace")
        if name != "SecureBoot":
            continue
        value = event.data[32 + 2 * name_len :]
        state = "enabled" if value == b"\x01" else "disabled" if value in (b"", b"\x00") else state
    return state


def appraise_boot(quote: VerifiedQuote, log: FirmwareLog) -> BootAppraisal:
    """Step 1 (and the Secure Boot state): the log replays to every quoted PCR 0-7."""
    quoted = quote.quoted()
    covered = {alg: [i for i in BOOT_PCRS if i in values] for alg, values in quoted.items()}
    if not any(covered.values()):
        raise QuoteError(
            "boot-replay",
            "the quote covers none of the firmware PCRs 0-7",
            hint="ask for a quote over PCRs 0-7 (rkt attest verify --remote does)",
        )
    replayed = replay_firmware_log(log)
    try:
        check_replay(quote, replayed, pcrs=sorted({i for v in covered.values() for i in v}))
    except QuoteError as err:
        raise QuoteError(
            "boot-replay",
            f"the firmware log does not replay to the quote: {err.detail}",
            hint="an event was added to, removed from or changed in the firmware log",
        ) from None
    pcrs = {alg: {i: quoted[alg][i] for i in idx} for alg, idx in covered.items() if idx}
    return BootAppraisal(pcrs, secure_boot_state(log), len(log.events))


def boot_problems(appraisal: BootAppraisal, policy: BootPolicy) -> list[str]:
    """Steps 2 and 3: every way the appraised boot differs from the policy."""
    problems: list[str] = []
    alg = HashAlg.from_label(policy.bank) or HashAlg.SHA256  # the Literal allows known banks
    values = appraisal.pcrs.get(alg)
    references: list[tuple[str, dict[int, bytes]]] = []
    if policy.pcrs:
        references.append(
            ("the reference", {int(k): bytes.fromhex(v) for k, v in policy.pcrs.items()})
        )
    if policy.golden_log is not None:
        references.append(
            (f"the golden log {policy.golden_log}", golden_pcrs(policy.golden_log, alg))
        )
    for name, reference in references:
        if values is None or not set(reference) <= set(values):
            problems.append(f"the quote does not cover {alg.label} PCRs {sorted(reference)}")
            continue
        for index, expected in sorted(reference.items()):
            if len(expected) != alg.size:
                problems.append(f"{name} value of PCR {index} is not a {alg.label} digest")
            elif not hmac.compare_digest(values[index], expected):
                problems.append(
                    f"{alg.label} PCR {index} is {values[index].hex()}, {name} says "
                    f"{expected.hex()}"
                )
    if policy.secure_boot not in ("any", appraisal.secure_boot):
        problems.append(
            f"Secure Boot is {appraisal.secure_boot} in the firmware log, the policy requires "
            f"{policy.secure_boot}"
        )
    return problems


def golden_pcrs(path: str, alg: HashAlg) -> dict[int, bytes]:
    """PCRs 0-7 of the ``alg`` bank a golden firmware log replays to."""
    try:
        with Path(path).open("rb") as fh:
            data = fh.read(_GOLDEN_MAX + 1)
    except OSError as err:
        raise UserError(f"cannot read the golden log {path!r}: {err.strerror}") from None
    if len(data) > _GOLDEN_MAX:
        raise UserError(f"the golden log {path!r} is larger than {_GOLDEN_MAX} bytes")
    replayed = boot_pcrs(replay_firmware_log(parse_firmware_log(data)))
    if alg not in replayed:
        raise UserError(
            f"the golden log {path!r} has no {alg.label} bank",
            hint="set [boot] bank to a bank the golden log carries",
        )
    return replayed[alg]

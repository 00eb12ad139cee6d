"""The two ways attestation input can fail: unreadable, or readable but untrue (CONVENTIONS 8)."""

from __future__ import annotations

from trustd.shared.errors import RemoteLiedError, UserError


class AttestFormatError(UserError):
    """A quote, key, PCR file or event log cannot be read: truncated, trailing bytes, bad field.

    ``structure`` names what was being read (``TPMS_ATTEST``, ``CEL record 3``) and ``field`` the
    field that failed, so the message points at the byte that is wrong.
    """

    def __init__(self, structure: str, field: str, problem: str, *, hint: str = "") -> None:
        super().__init__(
            f"{structure}: field {field}: {problem}",
            hint=hint or "the file is damaged or is not in the format named; produce it again",
        )
        self.structure = structure
        self.field = field
        self.problem = problem


class QuoteError(RemoteLiedError):
    """The quote or the event log does not check out; ``check`` names the check that failed.

    Checks, in the order they run: ``signature``, ``magic``, ``type``, ``nonce``,
    ``pcr-selection``, ``pcr-digest``, ``event-digest``, ``replay``; then the boot
    appraisal's ``boot-replay`` (:mod:`trustd.shared.attest.boot`).
    """

    def __init__(self, check: str, message: str, *, hint: str = "") -> None:
        super().__init__(
            f"attestation check {check!r} failed: {message}",
            hint=hint or "do not trust this machine's state; quote it again with a fresh nonce",
        )
        self.check = check
        self.detail = message

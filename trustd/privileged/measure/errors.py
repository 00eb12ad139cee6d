"""Errors of the measurement layer (CONVENTIONS 8): who is at fault, and what to do next."""

from __future__ import annotations

from trustd.shared.errors import PolicyViolationError, RemoteLiedError


class MeasurementError(PolicyViolationError):
    """The TPM could not measure (or quote): the run must not start unless policy says best-effort.

    ``backend`` names the TPM backend in use ("swtpm", "device", "tcti") so the message and
    ``rkt attest status`` agree on which TPM failed.
    """

    def __init__(self, message: str, *, backend: str, hint: str = "") -> None:
        super().__init__(f"measurement ({backend}): {message}", hint=hint)
        self.backend = backend


class MalformedAttestationFileError(RemoteLiedError):
    """A quote bundle file (PCR file, event log) is truncated or does not parse."""

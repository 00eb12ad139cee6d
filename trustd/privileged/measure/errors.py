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


def tpm_failed(tcti: str, backend: str, exc: BaseException, *, opening: bool) -> MeasurementError:
    """The error for a TPM that ``tcti`` could not open (``opening``) or whose command failed,
    in the same words whichever client (tpm2-pytss or the raw one) talked to it."""
    what = "cannot open the TPM" if opening else "TPM command failed"
    return MeasurementError(
        f"{what} through TCTI {tcti!r}: {exc}", backend=backend, hint="run: rkt attest status"
    )


class MalformedAttestationFileError(RemoteLiedError):
    """A quote bundle file (PCR file, event log) is truncated or does not parse."""

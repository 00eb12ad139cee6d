"""The attestation key's secret: 32 random bytes in ``<data-dir>/tpm/ak.secret`` (0600 root).

The AK is a primary key, re-derived on every use from the owner seed and its template. A
fixed template would let anyone who reaches the TPM re-derive the same key and give it an
auth value of their own, i.e. sign with it. So the template's ``unique`` field is derived
from this secret (another template yields another key), and the key's auth value too
(a process that finds trustd's AK loaded still cannot sign with it). Lose the file and the
AK is gone: verifiers must pin the new one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from trustd.shared.errors import LocalStateError

SECRET_FILE: Final = "ak.secret"  # noqa: S105 (a file name, not a secret)
SIZE: Final = 32


@dataclass(frozen=True, slots=True, repr=False)
class AkSecret:
    """What the AK template and authorization are derived from (never printed)."""

    value: bytes

    @property
    def unique(self) -> bytes:
        """The template's ``unique.ecc.x``: selects the key under the owner seed."""
        return hmac.new(self.value, b"trustd attestation key v2: unique", hashlib.sha256).digest()

    @property
    def auth(self) -> bytes:
        """The AK's auth value: every quote supplies it."""
        return hmac.new(self.value, b"trustd attestation key v2: auth", hashlib.sha256).digest()


def _check(fd: int, path: Path) -> bytes:
    st = os.fstat(fd)
    if (
        not stat.S_ISREG(st.st_mode)
        or st.st_uid != os.geteuid()
        or stat.S_IMODE(st.st_mode) & 0o077
        or st.st_size != SIZE
    ):
        raise LocalStateError(
            f"{path} is not a {SIZE}-byte 0600 file of uid {os.geteuid()}",
            hint=f"the AK derived from it can no longer be trusted: rm {path} and pin the new AK"
            " (rkt attest ak --out AK.pem)",
        )
    return os.read(fd, SIZE + 1)


def load_or_create(tpm_dir: Path) -> AkSecret:
    """Read ``ak.secret``, creating it (O_EXCL, 0600) on first use; the caller holds the lock."""
    path = tpm_dir / SECRET_FILE
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, os.urandom(SIZE))
            os.fsync(fd)
        finally:
            os.close(fd)
        fd = os.open(path, flags)
    except OSError as exc:
        raise LocalStateError(f"{path}: {exc.strerror}", hint=f"inspect {path}") from exc
    try:
        return AkSecret(_check(fd, path))
    finally:
        os.close(fd)

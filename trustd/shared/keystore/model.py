"""What the keystore holds: one record per file in a scope directory."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from trustd.shared._dataclass import frozen
from trustd.shared.keystore._layout import Scope
from trustd.shared.ocisig.sigstore import PemKey
from trustd.shared.verify import PublicKey
from trustd.shared.verify.model import Level

AddStatus = Literal["added", "already-trusted", "updated"]


@frozen
class KeyFile:
    """A file named by a fingerprint under ``root.d`` or ``prefix.d/<prefix>``.

    Exactly one of: ``key`` (a usable key file), ``mask`` (a zero-byte file hiding the
    system key of that fingerprint), ``problem`` (unreadable, malformed or mismatched).
    """

    path: Path
    scope: Scope
    level: Level
    fingerprint: str
    key: PublicKey | None = None
    mask: bool = False
    problem: str | None = None
    pem: PemKey | None = None  # a sigstore public key (docker.d, named by its 64-hex key ID)

    @property
    def scope_text(self) -> str:
        return "root" if self.scope is None else f'prefix "{self.scope}"'


@frozen
class TrustedPem:
    """A sigstore key trusted for a ``docker://`` prefix, and where it was found."""

    key: PemKey
    scope: Scope
    level: Level
    path: Path

    @property
    def scope_text(self) -> str:
        return f'prefix "{self.scope}"'


@frozen
class AddResult:
    path: Path
    status: AddStatus
    key: PublicKey | None  # None: a sigstore key (``pem``)
    pem: PemKey | None = None


@frozen
class RemoveResult:
    path: Path
    masked_system_key: bool

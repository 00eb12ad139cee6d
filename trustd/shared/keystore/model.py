"""What the keystore holds: one record per file in a scope directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from trustd.shared.keystore._layout import Scope
from trustd.shared.verify import PublicKey
from trustd.shared.verify.model import Level

AddStatus = Literal["added", "already-trusted", "updated"]


@dataclass(frozen=True, slots=True)
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

    @property
    def scope_text(self) -> str:
        return "root" if self.scope is None else f'prefix "{self.scope}"'


@dataclass(frozen=True, slots=True)
class AddResult:
    path: Path
    status: AddStatus
    key: PublicKey


@dataclass(frozen=True, slots=True)
class RemoveResult:
    path: Path
    masked_system_key: bool

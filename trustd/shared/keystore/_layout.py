"""rkt's on-disk keystore layout (pkg/keystore): where each scope's keys live."""

from __future__ import annotations

import re
from pathlib import Path

from trustd.shared.appc.identifier import ACIdentifier

FINGERPRINT_FILE = re.compile(r"^[0-9a-f]{40}$")


def trustedkeys(config_dir: Path) -> Path:
    return config_dir / "trustedkeys"


def scope_dir(config_dir: Path, scope: ACIdentifier | None) -> Path:
    """``root.d`` for root keys; ``prefix.d/<prefix>`` (the identifier as a relative path)."""
    base = trustedkeys(config_dir)
    if scope is None:
        return base / "root.d"
    return base.joinpath("prefix.d", *scope.segments)


def scope_of(config_dir: Path, directory: Path) -> ACIdentifier | None:
    """Inverse of :func:`scope_dir` for a directory found by walking ``prefix.d``."""
    rel = directory.relative_to(trustedkeys(config_dir) / "prefix.d")
    return ACIdentifier("/".join(rel.parts))

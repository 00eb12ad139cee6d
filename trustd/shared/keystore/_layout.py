"""rkt's on-disk keystore layout (pkg/keystore): where each scope's keys live.

ACI prefixes keep rkt's layout (``prefix.d/<prefix>``); Docker prefixes live beside it in
``docker.d/<registry[:port]>/<path>`` (docs/adr/0021-docker-signatures.md), which rkt never
reads, so a keystore stays usable by rkt.
"""

from __future__ import annotations

import re
from pathlib import Path

from trustd.shared.appc.identifier import ACIdentifier
from trustd.shared.errors import TrustdError
from trustd.shared.ocisig.name import DockerName

FINGERPRINT_FILE = re.compile(r"^[0-9a-f]{40}$")
KEY_ID_FILE = re.compile(
    r"^[0-9a-f]{64}$"
)  # a sigstore PEM key (docker.d only): sha256 of its SPKI
Scope = ACIdentifier | DockerName | None


def trustedkeys(config_dir: Path) -> Path:
    return config_dir / "trustedkeys"


def scope_dir(config_dir: Path, scope: Scope) -> Path:
    """``root.d`` for root keys; ``prefix.d/<prefix>``; ``docker.d/<registry>/<path>``."""
    base = trustedkeys(config_dir)
    if scope is None:
        return base / "root.d"
    if isinstance(scope, DockerName):
        return base.joinpath("docker.d", *scope.segments)
    return base.joinpath("prefix.d", *scope.segments)


def scope_of(config_dir: Path, directory: Path) -> ACIdentifier:
    """Inverse of :func:`scope_dir` for a directory found by walking ``prefix.d``."""
    rel = directory.relative_to(trustedkeys(config_dir) / "prefix.d")
    return ACIdentifier("/".join(rel.parts))


def docker_scope_of(config_dir: Path, directory: Path) -> DockerName | None:
    """Inverse of :func:`scope_dir` for ``docker.d``; None for a directory no name maps to."""
    rel = directory.relative_to(trustedkeys(config_dir) / "docker.d")
    try:
        return DockerName(rel.parts[0], "/".join(rel.parts[1:]))
    except TrustdError:
        return None

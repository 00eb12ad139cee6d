"""Where the policy in force lives: ``<local-config>/policy.toml`` over the system one."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from trustd.shared.policy._codec import PolicyFileError, load_policy, read_policy_file
from trustd.shared.policy.model import Policy
from trustd.shared.shipped import default_policy

if TYPE_CHECKING:
    from trustd.shared.policy._compiled import PolicyCache

POLICY_NAME = "policy.toml"


def shipped_default() -> Path:
    """The shipped default policy, inside the installed package (what ``make install``
    installs as the system one)."""
    return default_policy()


def install_hint(local_config: Path) -> str:
    """A command that puts the shipped default in force, as this install finds it: ``-D``
    makes the directory, the target is the file name trustd reads (issue #15)."""
    command = [
        "install",
        "-D",
        "-m",
        "0644",
        str(shipped_default()),
        str(local_config / POLICY_NAME),
    ]
    return f"install the shipped default: {shlex.join(command)}"


def effective_policy_path(system_config: Path, local_config: Path) -> Path | None:
    """The local file if it exists (it replaces the system file whole), else the system one."""
    for base in (local_config, system_config):
        path = base / POLICY_NAME
        if path.exists():
            return path
    return None


def load_effective(
    system_config: Path, local_config: Path, cache: PolicyCache | None = None
) -> Policy:
    """The policy in force. No file is an error: there is no silent default (CONVENTIONS 5).
    With ``cache`` (root's), a file already checked is taken from its compiled form, keyed
    by the digest of the bytes read now (:mod:`trustd.shared.policy._compiled`)."""
    path = effective_policy_path(system_config, local_config)
    if path is None:
        error = PolicyFileError(
            str(local_config / POLICY_NAME),
            (),
            f"no policy: neither {local_config / POLICY_NAME} nor "
            f"{system_config / POLICY_NAME} exists",
            None,
        )
        error.hint = install_hint(local_config)
        raise error
    if cache is None:
        return load_policy(path)
    from trustd.shared.policy._compiled import load_cached  # noqa: PLC0415

    return load_cached(read_policy_file(path), str(path), cache)

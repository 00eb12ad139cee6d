"""Where the policy in force lives: ``<local-config>/policy.toml`` over the system one."""

from __future__ import annotations

from pathlib import Path

from trustd.shared.policy._codec import PolicyFileError, load_policy
from trustd.shared.policy.model import Policy
from trustd.shared.shipped import default_policy

POLICY_NAME = "policy.toml"


def shipped_default() -> Path:
    """The shipped default policy, inside the installed package (what ``make install``
    installs as the system one)."""
    return default_policy()


def effective_policy_path(system_config: Path, local_config: Path) -> Path | None:
    """The local file if it exists (it replaces the system file whole), else the system one."""
    for base in (local_config, system_config):
        path = base / POLICY_NAME
        if path.exists():
            return path
    return None


def load_effective(system_config: Path, local_config: Path) -> Policy:
    """The policy in force. No file is an error: there is no silent default (CONVENTIONS 5)."""
    path = effective_policy_path(system_config, local_config)
    if path is None:
        error = PolicyFileError(
            str(local_config / POLICY_NAME),
            (),
            f"no policy: neither {local_config / POLICY_NAME} nor "
            f"{system_config / POLICY_NAME} exists",
            None,
        )
        error.hint = f"install the shipped default: cp {shipped_default()} {system_config}/"
        raise error
    return load_policy(path)

"""What an isolation setting is, and how a process confines itself right before exec:
capabilities, no_new_privs, seccomp (specs, their digests, and applying them to the caller).

Shared vocabulary: the policy names these settings, the root executor applies them. Nothing
here needs privilege over anything but the calling process.
Order in the child: :func:`apply_caps`, then :func:`apply_seccomp`
(which sets no_new_privs), then exec. Every ``apply_*`` raises
:class:`~trustd.shared.errors.PolicyViolationError` on failure (fail closed).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trustd.shared.isolation.caps import (
        CAP_NAMES,
        DEFAULT_CAPS,
        AppliedCaps,
        CapSet,
        apply_caps,
        default_caps,
    )
    from trustd.shared.isolation.caps import from_cli as caps_from_cli
    from trustd.shared.isolation.caps import from_isolator as caps_from_isolator
    from trustd.shared.isolation.dumpable import set_undumpable
    from trustd.shared.isolation.nnp import no_new_privs, set_no_new_privs
    from trustd.shared.isolation.seccomp import (
        ENOSYS_FALLBACK,
        SeccompMode,
        SeccompSpec,
        apply_seccomp,
        default_spec,
        spec_digest,
    )
    from trustd.shared.isolation.seccomp import from_cli as seccomp_from_cli
    from trustd.shared.isolation.seccomp import from_isolator as seccomp_from_isolator
    from trustd.shared.isolation.seccomp_profile import (
        ArgCmp,
        ProfileRule,
        ProfileSpec,
        profile_spec,
    )

# Loaded on first use (PEP 562): the policy model needs only the capability names, and
# importing the seccomp tables with them cost every fetch ~30 ms (issue #12, "Benchmark").
_WHERE: dict[str, tuple[str, str]] = {
    "CAP_NAMES": ("caps", "CAP_NAMES"),
    "DEFAULT_CAPS": ("caps", "DEFAULT_CAPS"),
    "AppliedCaps": ("caps", "AppliedCaps"),
    "CapSet": ("caps", "CapSet"),
    "apply_caps": ("caps", "apply_caps"),
    "default_caps": ("caps", "default_caps"),
    "caps_from_cli": ("caps", "from_cli"),
    "caps_from_isolator": ("caps", "from_isolator"),
    "set_undumpable": ("dumpable", "set_undumpable"),
    "no_new_privs": ("nnp", "no_new_privs"),
    "set_no_new_privs": ("nnp", "set_no_new_privs"),
    "ENOSYS_FALLBACK": ("seccomp", "ENOSYS_FALLBACK"),
    "SeccompMode": ("seccomp", "SeccompMode"),
    "SeccompSpec": ("seccomp", "SeccompSpec"),
    "apply_seccomp": ("seccomp", "apply_seccomp"),
    "default_spec": ("seccomp", "default_spec"),
    "spec_digest": ("seccomp", "spec_digest"),
    "seccomp_from_cli": ("seccomp", "from_cli"),
    "seccomp_from_isolator": ("seccomp", "from_isolator"),
    "ArgCmp": ("seccomp_profile", "ArgCmp"),
    "ProfileRule": ("seccomp_profile", "ProfileRule"),
    "ProfileSpec": ("seccomp_profile", "ProfileSpec"),
    "profile_spec": ("seccomp_profile", "profile_spec"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    globals()[name] = value
    return value


__all__ = [
    "CAP_NAMES",
    "DEFAULT_CAPS",
    "ENOSYS_FALLBACK",
    "AppliedCaps",
    "ArgCmp",
    "CapSet",
    "ProfileRule",
    "ProfileSpec",
    "SeccompMode",
    "SeccompSpec",
    "apply_caps",
    "apply_seccomp",
    "caps_from_cli",
    "caps_from_isolator",
    "default_caps",
    "default_spec",
    "no_new_privs",
    "profile_spec",
    "seccomp_from_cli",
    "seccomp_from_isolator",
    "set_no_new_privs",
    "set_undumpable",
    "spec_digest",
]

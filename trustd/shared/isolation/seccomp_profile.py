"""A Docker-format seccomp profile, resolved for one app, as a filter the kernel can load.

The policy layer parses moby's and containers-common's profiles and picks the rules that apply
to an architecture and a capability set (``trustd.shared.policy.seccomp_profile.resolve``); this
module only carries the result and loads it: a default action, then per-syscall rules with
their action, errno and argument comparisons (``personality`` only for a few personas,
``clone`` only without namespace flags). Nothing here imports the policy layer.

Semantics follow runc, which is what these profiles are written for:

* ``SCMP_ACT_ERRNO`` without an errno fails with ``EPERM``; ``SCMP_ACT_KILL`` is libseccomp's
  kill-thread; ``SCMP_ACT_NOTIFY`` needs a supervisor trustd does not have, so a profile that
  uses it is refused (fail closed) rather than loaded without it.
* Names this architecture does not have (or libseccomp does not know) are left out of the
  filter, as runc does; for a default-refuse profile that only narrows what is allowed.

The digest of a :class:`ProfileSpec` is the profile *file's* digest (``sha256-<hex>`` of its
bytes), the one a policy names in ``run.seccomp``: the file plus the app's capabilities (which
the policy checks on their own) determine the filter.
"""

from __future__ import annotations

import errno as errno_mod
import re
from collections.abc import Iterable
from dataclasses import dataclass

from trustd.shared.errors import PolicyViolationError, UserError
from trustd.shared.isolation import _syscalls
from trustd.shared.isolation._syscalls import CMP_OPS, ArgCmp
from trustd.shared.isolation.nnp import set_no_new_privs

__all__ = ["CMP_OPS", "ArgCmp", "ProfileRule", "ProfileSpec", "apply_profile", "profile_spec"]

_ACTIONS = {
    "SCMP_ACT_ALLOW": "allow",
    "SCMP_ACT_ERRNO": "errno",
    "SCMP_ACT_KILL": "kill_thread",
    "SCMP_ACT_KILL_THREAD": "kill_thread",
    "SCMP_ACT_KILL_PROCESS": "kill",
    "SCMP_ACT_TRAP": "trap",
    "SCMP_ACT_LOG": "log",
    "SCMP_ACT_TRACE": "trace",
}
_DIGEST = re.compile(r"sha256-[0-9a-f]{64}")
_MAX_ERRNO = 4095


@dataclass(frozen=True)
class ProfileRule:
    """Syscalls that share one action, errno and set of argument comparisons (all must hold)."""

    names: tuple[str, ...]
    action: str  # SCMP_ACT_*, as the profile spells it
    errno: int | None = None
    args: tuple[ArgCmp, ...] = ()

    def __post_init__(self) -> None:
        _check_action(self.action, self.errno, f"rule for {', '.join(self.names)}")
        for cmp in self.args:
            if cmp.op not in CMP_OPS or not 0 <= cmp.index <= 5:
                raise UserError(f"seccomp profile: invalid argument comparison {cmp}")

    def action_for(self) -> _syscalls.Action:
        return _action(self.action, self.errno)


@dataclass(frozen=True)
class ProfileSpec:
    """One app's filter from a Docker-format profile, resolved for its arch and capabilities.

    ``profile`` is what the run named (``moby-default`` or a path), ``digest`` the profile
    file's ``sha256-<hex>``; ``source`` says where it came from, for audit records.
    """

    profile: str
    digest: str
    default_action: str
    default_errno: int | None
    rules: tuple[ProfileRule, ...]
    source: str = ""

    def __post_init__(self) -> None:
        if not _DIGEST.fullmatch(self.digest):
            raise UserError(f"seccomp profile {self.profile}: digest {self.digest!r} is invalid")
        _check_action(self.default_action, self.default_errno, f"profile {self.profile}")

    @property
    def refuses_nothing(self) -> bool:
        return self.default_action == "SCMP_ACT_ALLOW" and not any(
            r.action != "SCMP_ACT_ALLOW" for r in self.rules
        )


def _check_action(action: str, err: int | None, where: str) -> None:
    if action not in _ACTIONS:
        raise UserError(
            f"seccomp {where}: action {action!r} cannot be applied",
            hint=f"use one of {', '.join(_ACTIONS)} (SCMP_ACT_NOTIFY needs a supervisor)",
        )
    if err is not None and not 0 <= err <= _MAX_ERRNO:
        raise UserError(f"seccomp {where}: invalid errno {err}")


def _action(action: str, err: int | None) -> _syscalls.Action:
    kind = _ACTIONS[action]
    if kind in ("errno", "trace"):
        return _syscalls.Action(kind, errno_mod.EPERM if err is None else err)
    return _syscalls.Action(kind)


def profile_spec(
    profile: str,
    digest: str,
    default: tuple[str, int | None],
    rules: Iterable[ProfileRule],
    source: str = "",
) -> ProfileSpec:
    """A :class:`ProfileSpec` keeping only the syscall names that exist on this architecture.

    Rules left with no name are dropped. Raises UserError for an action trustd cannot apply.
    """
    kept: list[ProfileRule] = []
    for rule in rules:
        native = _syscalls.native(rule.names)
        names = tuple(n for n in rule.names if n in native)
        if names:
            kept.append(ProfileRule(names, rule.action, rule.errno, rule.args))
    return ProfileSpec(profile, digest, default[0], default[1], tuple(kept), source)


def apply_profile(spec: ProfileSpec, *, no_new_privs: bool = True) -> None:
    """Set ``no_new_privs`` (unless told not to: see apply_seccomp) and load ``spec``'s
    filter into the calling process (fail closed)."""
    if no_new_privs:
        set_no_new_privs()
    rules = [(rule.action_for(), name, rule.args) for rule in spec.rules for name in rule.names]
    try:
        _syscalls.load_filter(
            _action(spec.default_action, spec.default_errno), rules, no_new_privs=no_new_privs
        )
    except (OSError, ValueError) as exc:
        raise PolicyViolationError(
            f"cannot load the seccomp filter ({spec.source or spec.profile}): {exc}",
            hint="the app was not started; check the seccomp profile",
        ) from exc

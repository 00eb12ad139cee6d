"""``--seccomp=profile=NAME|PATH``: a Docker-format profile resolved for one app, into the plan
and back out of it.

The policy layer parses the profile and picks the rules for this arch, kernel and the app's
capability set (moby's includes/excludes); the isolation layer loads the result. A name is one
the policy knows (the shipped ``moby-default`` and ``containers-default``, or its own
``[seccomp_profiles]`` table); anything with a ``/`` is an absolute path to a profile file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from trustd.privileged.executor.plan import SeccompPlan, SeccompRulePlan
from trustd.shared.errors import LocalStateError, UserError
from trustd.shared.isolation import (
    CAP_NAMES,
    ArgCmp,
    ProfileRule,
    ProfileSpec,
    SeccompSpec,
    profile_spec,
)
from trustd.shared.policy import Policy, seccomp_profile_paths
from trustd.shared.policy import seccomp_profile as docker

PREFIX = "profile="
_KERNEL = re.compile(r"(\d+)\.(\d+)")


def is_profile(text: str | None) -> bool:
    return bool(text) and str(text).startswith(PREFIX)


def _kernel() -> tuple[int, int] | None:
    found = _KERNEL.match(os.uname().release)
    return (int(found[1]), int(found[2])) if found else None


def _path(ref: str, policy: Policy) -> Path:
    if "/" in ref:
        path = Path(ref)
        if not path.is_absolute():
            raise UserError(
                f"--seccomp: profile path {ref!r} is relative",
                hint="give an absolute path, e.g. --seccomp=profile=/etc/rkt/seccomp/app.json",
            )
        return path
    paths = seccomp_profile_paths(policy)
    if ref not in paths:
        raise UserError(
            f"--seccomp: no seccomp profile named {ref!r}",
            hint=f"use one of {', '.join(sorted(paths))}, or profile=/absolute/path.json",
        )
    return paths[ref].absolute()


def _rules(flt: docker.SyscallFilter) -> list[ProfileRule]:
    """Runs of consecutive names with the same action, errno and args, as one rule each."""
    rules: list[ProfileRule] = []
    for r in flt.rules:
        args = tuple(ArgCmp(a.index, a.op, a.value, a.value_two) for a in r.args)
        last = rules[-1] if rules else None
        if last and (last.action, last.errno, last.args) == (r.action, r.errno, args):
            rules[-1] = ProfileRule((*last.names, r.name), r.action, r.errno, args)
        else:
            rules.append(ProfileRule((r.name,), r.action, r.errno, args))
    return rules


def _resolve(ref: str, path: Path, caps: tuple[str, ...] | None) -> ProfileSpec:
    profile = docker.load_profile(path)
    have = frozenset(CAP_NAMES) if caps is None else frozenset(caps)
    flt = docker.resolve(profile, arch=docker.native_arch(), caps=have, kernel=_kernel())
    default = (flt.default_action, flt.default_errno)
    source = f"--seccomp profile={ref}"
    return profile_spec(ref, profile.digest, default, _rules(flt), source)


def _to_plan(spec: ProfileSpec, path: Path) -> SeccompPlan:
    rules = tuple(
        SeccompRulePlan(
            r.names, r.action, r.errno, tuple((a.index, a.op, a.value, a.value_two) for a in r.args)
        )
        for r in spec.rules
    )
    return SeccompPlan(
        "profile",
        (),
        spec.default_errno,
        spec.source,
        profile=spec.profile,
        profile_path=str(path),
        profile_digest=spec.digest,
        default_action=spec.default_action,
        rules=rules,
    )


def plan_profile(text: str, policy: Policy, caps: tuple[str, ...] | None) -> SeccompPlan:
    """The plan for ``profile=NAME|PATH``, resolved for ``caps`` (None: unrestricted)."""
    ref = text.removeprefix(PREFIX)
    path = _path(ref, policy)
    return _to_plan(_resolve(ref, path, caps), path)


def spec_from_plan(sec: SeccompPlan) -> SeccompSpec | ProfileSpec:
    """What the app's process loads: nothing is read from disk (it runs after pivot_root)."""
    if sec.mode != "profile":
        return SeccompSpec(
            "retain" if sec.mode == "retain" else "remove",
            frozenset(sec.syscalls),
            sec.errno,
            sec.source,
        )
    rules = tuple(
        ProfileRule(r.names, r.action, r.errno, tuple(ArgCmp(*a) for a in r.args))
        for r in sec.rules
    )
    return ProfileSpec(
        sec.profile or "",
        sec.profile_digest or "",
        sec.default_action or "",
        sec.errno,
        rules,
        sec.source,
    )


def check_profile(sec: SeccompPlan, caps: tuple[str, ...] | None) -> None:
    """Re-resolve a planned profile from its file: the recorded filter must be what the file
    (still) says for these capabilities, so the digest the gate checks stands for it."""
    if sec.mode != "profile":
        return
    path = Path(sec.profile_path or "")
    fresh = _to_plan(_resolve(sec.profile or "", path, caps), path)
    if fresh != sec:
        raise LocalStateError(
            f"the planned seccomp filter no longer matches profile {sec.profile} ({path}, "
            f"planned {sec.profile_digest}, now {fresh.profile_digest})",
            hint="prepare the pod again",
        )

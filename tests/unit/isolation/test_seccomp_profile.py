"""Docker-format profiles for real: a forked child loads the filter and tries syscalls.

Argument conditions are checked with a hand-written profile; moby's shipped default is
resolved the way the executor resolves ``--seccomp=profile=moby-default`` (for the app's
capabilities on this arch) and loaded into the child.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import pyseccomp  # type: ignore[import-untyped]
import pytest

from tests.unit.isolation._fork import Outcome, raw_syscall, run_exec, run_isolated
from trustd.privileged.executor._seccomp import check_profile, plan_profile, spec_from_plan
from trustd.privileged.executor.plan import SeccompPlan
from trustd.shared.codec import decode_doc
from trustd.shared.errors import LocalStateError, UserError
from trustd.shared.isolation import (
    DEFAULT_CAPS,
    ArgCmp,
    ProfileRule,
    ProfileSpec,
    apply_seccomp,
    profile_spec,
    spec_digest,
)
from trustd.shared.policy import load_policy, shipped_default
from trustd.shared.policy._profiles import digest_for

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
PER_QUERY = 0xFFFFFFFF
PER_BSD = 0x0006
DIGEST = "sha256-" + "ab" * 32


def nr(name: str) -> int:
    return int(pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name))


def call(name: str, *args: int) -> Callable[[], int]:
    return lambda: raw_syscall(nr(name), *args)


def under(spec: ProfileSpec, probe: Callable[[], object]) -> Outcome:
    return run_isolated(lambda: apply_seccomp(spec), probe)


def moby(caps: tuple[str, ...] = tuple(sorted(DEFAULT_CAPS))) -> ProfileSpec:
    plan = plan_profile("profile=moby-default", load_policy(shipped_default()), caps)
    spec = spec_from_plan(plan)
    assert isinstance(spec, ProfileSpec)
    return spec


def allow_all_but(*rules: ProfileRule) -> ProfileSpec:
    return profile_spec("test", DIGEST, ("SCMP_ACT_ALLOW", None), rules)


def test_eq_condition_allows_only_that_value() -> None:
    spec = profile_spec(
        "test",
        DIGEST,
        ("SCMP_ACT_ERRNO", errno.EACCES),
        [
            ProfileRule(("personality",), "SCMP_ACT_ALLOW", None, (ArgCmp(0, "SCMP_CMP_EQ", 0),)),
            *(ProfileRule((n,), "SCMP_ACT_ALLOW") for n in ("write", "exit_group", "exit")),
        ],
    )
    assert under(spec, call("personality", 0)).kind == "ok"
    assert under(spec, call("personality", PER_BSD)).errno == errno.EACCES


def test_masked_eq_and_ne_conditions_refuse_as_written() -> None:
    flags = 0x7E020000  # moby's clone mask: the namespace flags
    spec = allow_all_but(
        ProfileRule(("unshare",), "SCMP_ACT_ERRNO", errno.ENOTSUP, (ArgCmp(0, "SCMP_CMP_NE", 0),)),
        ProfileRule(
            ("setns",),
            "SCMP_ACT_ERRNO",
            errno.EXDEV,
            (ArgCmp(1, "SCMP_CMP_MASKED_EQ", flags, 0x04000000),),
        ),
    )
    assert under(spec, call("unshare", 0x04000000)).errno == errno.ENOTSUP
    assert under(spec, call("unshare", 0)) == Outcome("ok", 0)
    assert under(spec, call("setns", 999, 0x04000000)).errno == errno.EXDEV
    assert under(spec, call("setns", 999, 0)).errno == errno.EBADF  # reached the kernel


def test_notify_action_is_refused_not_dropped() -> None:
    with pytest.raises(UserError, match="SCMP_ACT_NOTIFY"):
        allow_all_but(ProfileRule(("mkdir",), "SCMP_ACT_NOTIFY"))


def test_profile_digest_is_the_file_digest_the_policy_names() -> None:
    policy = load_policy(shipped_default())
    assert spec_digest(moby()) == digest_for(policy, "moby-default")[0]


@needs_root
def test_moby_default_refuses_what_it_leaves_out_with_eperm() -> None:
    spec = moby()
    assert under(spec, call("kexec_load", 0, 0, 0, 0)).errno == errno.EPERM
    root = Path("/").stat().st_ino
    assert under(spec, lambda: Path("/").stat().st_ino) == Outcome("ok", root)
    assert run_exec(lambda: apply_seccomp(spec), ["/bin/sh", "-c", "ls / >/dev/null; exit 7"]) == (
        Outcome("exit", 7)
    )


@needs_root
def test_moby_default_allows_personality_only_for_its_personas() -> None:
    spec = moby()
    assert under(spec, call("personality", PER_QUERY)).kind == "ok"
    assert under(spec, call("personality", PER_BSD)).errno == errno.EPERM


@needs_root
def test_moby_capability_includes_follow_the_apps_capabilities() -> None:
    """open_by_handle_at is in moby's profile only for CAP_DAC_READ_SEARCH."""
    probe = call("open_by_handle_at", -1, 0, 0)
    assert under(moby(), probe).errno == errno.EPERM
    with_cap = moby((*sorted(DEFAULT_CAPS), "CAP_DAC_READ_SEARCH"))
    assert under(with_cap, probe).errno not in (None, errno.EPERM)  # refused by the kernel


def test_profile_plan_survives_plan_json_and_old_plans_still_load() -> None:
    plan = plan_profile("profile=moby-default", load_policy(shipped_default()), None)
    assert decode_doc(_roundtrip(plan), SeccompPlan, "plan.json") == plan
    old = {"mode": "retain", "syscalls": ["read"], "errno": None, "source": "x"}
    assert decode_doc(old, SeccompPlan, "plan.json") == SeccompPlan("retain", ("read",), None, "x")


def _roundtrip(plan: SeccompPlan) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(json.dumps(asdict(plan)))
    return loaded


def test_a_tampered_planned_filter_is_caught_before_the_gate() -> None:
    caps = tuple(sorted(DEFAULT_CAPS))
    plan = plan_profile("profile=moby-default", load_policy(shipped_default()), caps)
    check_profile(plan, caps)
    with pytest.raises(LocalStateError, match="no longer matches profile moby-default"):
        check_profile(replace(plan, default_action="SCMP_ACT_ALLOW"), caps)
    with pytest.raises(LocalStateError):
        check_profile(plan, (*caps, "CAP_SYS_ADMIN"))

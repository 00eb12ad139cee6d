"""Seccomp for real: a forked child loads the filter, tries a syscall and reports the errno.

The table at the end is ported from rkt's functional test (vectors/seccomp_cases.json,
rkt/rkt tests/rkt_seccomp_test.go): rkt's ``/inspect -stat-file`` becomes ``os.stat("/")`` in the
child; ``{STAT_SYSCALL}`` is ``newfstatat``, which glibc >= 2.33 uses for stat() on x86_64.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.unit.isolation._fork import (
    CLONE_NEWUTS,
    Outcome,
    proc_status,
    raw_syscall,
    run_exec,
    run_isolated,
    unshare,
)
from trustd.shared.insecure import Insecure, parse_insecure_options
from trustd.shared.isolation import (
    SeccompSpec,
    apply_seccomp,
    default_spec,
    seccomp_from_cli,
    seccomp_from_isolator,
)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
STAT_SYSCALL = "newfstatat"
CASES = json.loads((Path(__file__).parent / "vectors" / "seccomp_cases.json").read_text())["cases"]


def stat_root() -> bool:
    return stat.S_ISDIR(Path("/").stat().st_mode)


def under(spec: SeccompSpec, probe: Callable[[], object]) -> Outcome:
    return run_isolated(lambda: apply_seccomp(spec), probe)


def test_default_whitelist_allows_stat() -> None:
    assert under(default_spec(), stat_root) == Outcome("ok", True)


def test_default_whitelist_kills_on_unlisted_syscall() -> None:
    """rkt's default: a syscall off the whitelist ends the app with SIGSYS."""
    assert under(default_spec(), lambda: unshare(CLONE_NEWUTS)) == Outcome("signal", signal.SIGSYS)


def test_default_whitelist_runs_a_real_glibc_program() -> None:
    """glibc >= 2.35 calls rseq at start-up, which rkt's list lacks: it must get ENOSYS."""
    script = "ls / >/dev/null && cat /proc/self/status | grep -q 'Seccomp:.2' && exit 7"
    outcome = run_exec(lambda: apply_seccomp(default_spec()), ["/bin/sh", "-c", script])
    assert outcome == Outcome("exit", 7)


def test_status_shows_filter_and_no_new_privs() -> None:
    outcome = under(default_spec(), lambda: proc_status("Seccomp", "NoNewPrivs"))
    assert outcome == Outcome("ok", {"Seccomp": "2", "NoNewPrivs": "1"})


def test_remove_set_with_errno_fails_that_syscall_only(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.touch()
    spec = seccomp_from_cli("mode=remove,errno=ENOTSUP,chmod,fchmodat")
    assert under(spec, lambda: target.chmod(0o600)).errno == errno.ENOTSUP
    assert under(spec, stat_root) == Outcome("ok", True)


def test_remove_set_without_errno_kills(tmp_path: Path) -> None:
    spec = seccomp_from_cli("mode=remove,chmod")
    assert under(spec, lambda: tmp_path.chmod(0o700)) == Outcome("signal", signal.SIGSYS)


def test_remove_blacklist_refuses_unshare_with_errno() -> None:
    spec = seccomp_from_isolator(
        "os/linux/seccomp-remove-set", {"set": ["@rkt/default-blacklist"], "errno": "EXFULL"}
    )
    assert under(spec, lambda: unshare(CLONE_NEWUTS)).errno == errno.EXFULL


def test_retain_set_without_the_syscall_fails_it(tmp_path: Path) -> None:
    small = "read,write,close,exit_group,newfstatat,brk,mmap,munmap,rt_sigreturn,futex"
    spec = seccomp_from_cli(f"mode=retain,errno=EPERM,{small}")
    assert under(spec, lambda: tmp_path.chmod(0o700)).errno == errno.EPERM
    assert under(spec, stat_root) == Outcome("ok", True)


def test_retain_whitelist_with_errno_returns_it() -> None:
    spec = seccomp_from_cli("mode=retain,@rkt/default-whitelist,errno=EXFULL")
    assert under(spec, lambda: unshare(CLONE_NEWUTS)).errno == errno.EXFULL


def test_retain_keeps_enosys_fallback_for_glibc_probes() -> None:
    """clone3 off the list fails with ENOSYS (glibc falls back to clone), not SIGSYS."""
    spec = seccomp_from_cli("mode=retain,@rkt/default-whitelist,errno=EPERM")
    assert under(spec, lambda: raw_syscall(435, 0, 0)).errno == errno.ENOSYS  # clone3


@needs_root
def test_opt_out_refuses_nothing() -> None:
    spec = seccomp_from_cli("mode=retain,@appc.io/all")
    assert under(spec, lambda: unshare(CLONE_NEWUTS)) == Outcome("ok", 0)


def test_unloadable_filter_fails_closed() -> None:
    """A spec built around the parsers with a name libseccomp cannot resolve must not run."""
    spec = SeccompSpec("remove", frozenset({"no_such_syscall"}), errno.EPERM, "hand-made")
    outcome = under(spec, stat_root)
    assert outcome.kind == "error"
    assert str(outcome.value).startswith("PolicyViolationError: cannot load the seccomp filter")


def _spec_for(case: dict[str, Any]) -> SeccompSpec | None:
    """What the executor will run for an rkt test case; None means no filter at all."""
    run = dict(a.removeprefix("--").split("=", 1) for a in case["run_args"])
    if "insecure-options" in run and Insecure.SECCOMP in parse_insecure_options(
        run["insecure-options"]
    ):
        return None
    if "seccomp" in run:
        return seccomp_from_cli(run["seccomp"].replace("{STAT_SYSCALL}", STAT_SYSCALL))
    patch = dict(a.split("=", 1) for a in case["aci_patch_args"][1:])
    if "--seccomp-mode" not in patch:
        return default_spec()
    mode, _, errno_part = patch["--seccomp-mode"].partition(",")
    value = {
        "set": patch["--seccomp-set"].replace("{STAT_SYSCALL}", STAT_SYSCALL).split(","),
        "errno": errno_part.removeprefix("errno="),
    }
    return seccomp_from_isolator(f"os/linux/seccomp-{mode}-set", value)


def _as_user(case: dict[str, Any]) -> Callable[[], None]:
    run = dict(a.removeprefix("--").split("=", 1) for a in case["run_args"])

    def drop() -> None:
        if "group" in run:
            os.setgid(int(run["group"]))
        if "user" in run:
            os.setuid(int(run["user"]))

    return drop


_EXPECTED_ERRNO = {"exchange full": errno.EXFULL, "multihop attempted": errno.EMULTIHOP}


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_rkt_seccomp_cases(case: dict[str, Any]) -> None:
    needs_uid_change = any(a.startswith(("--user=", "--group=")) for a in case["run_args"])
    if needs_uid_change and os.geteuid() != 0:
        pytest.skip("needs root")
    spec = _spec_for(case)
    drop = _as_user(case)

    def setup() -> None:
        drop()
        if spec is not None:
            apply_seccomp(spec)

    outcome = run_isolated(setup, stat_root)
    if case["expect_error"]:
        assert outcome.errno == _EXPECTED_ERRNO[case["expected_output"]]
    else:
        assert case["expected_output"] == "/: mode: d"
        assert outcome == Outcome("ok", True)

"""Capabilities: parsers (table-driven) and, in a forked child, the sets the kernel reports."""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path
from typing import Any

import pytest

from tests.unit.isolation._fork import (
    CLONE_NEWNS,
    Outcome,
    libc_call,
    mount_tmpfs,
    proc_status,
    run_isolated,
    unshare,
)
from trustd.shared.errors import UserError
from trustd.shared.isolation import (
    DEFAULT_CAPS,
    CapSet,
    apply_caps,
    apply_seccomp,
    caps_from_cli,
    caps_from_isolator,
    default_caps,
    default_spec,
)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
RETAIN = "os/linux/capabilities-retain-set"
REMOVE = "os/linux/capabilities-remove-set"
DEFAULT_MASK = 0xA80425FB
PR_CAPBSET_DROP = 24
CAP_SYS_NICE = 23


def test_default_set_is_rkts_fourteen() -> None:
    assert len(DEFAULT_CAPS) == 14
    assert default_caps().mask == DEFAULT_MASK
    assert default_caps().sorted_names()[:3] == ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (RETAIN, {"set": ["CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"]},
         {"CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"}),
        (REMOVE, {"set": ["CAP_SYS_CHROOT", "CAP_MKNOD"]},
         DEFAULT_CAPS - {"CAP_SYS_CHROOT", "CAP_MKNOD"}),
        (REMOVE, {"set": ["CAP_SYS_ADMIN"]}, DEFAULT_CAPS),  # not in the default: no effect
        (RETAIN, {"set": ["CAP_SYS_ADMIN"], "x-extra": True}, {"CAP_SYS_ADMIN"}),
    ],
)  # fmt: skip
def test_isolator_accepts(name: str, value: dict[str, Any], expected: set[str]) -> None:
    caps = caps_from_isolator(name, value)
    assert caps.caps == expected
    assert caps.source.startswith(f"isolator {name}")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("os/linux/capabilities-set", {"set": ["CAP_CHOWN"]}, "is not a capability isolator"),
        (RETAIN, {"set": []}, "the capability set is empty"),
        (RETAIN, {"set": "CAP_CHOWN"}, "'set' must be a list"),
        (RETAIN, {}, "'set' must be a list"),
        (RETAIN, {"set": ["CAP_CHOWN", "CAP_TIME_TRAVEL"]}, "unknown capability 'CAP_TIME_TRAVEL'"),
        (REMOVE, {"set": ["cap_chown"]}, "unknown capability 'cap_chown'"),
    ],
)
def test_isolator_refuses(name: str, value: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message):
        caps_from_isolator(name, value)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, DEFAULT_CAPS),
        ({"retain": "CAP_NET_ADMIN,CAP_CHOWN"}, {"CAP_NET_ADMIN", "CAP_CHOWN"}),
        ({"remove": "CAP_NET_RAW"}, DEFAULT_CAPS - {"CAP_NET_RAW"}),
    ],
)
def test_cli_accepts(kwargs: dict[str, str], expected: set[str]) -> None:
    assert caps_from_cli(**kwargs).caps == expected


@pytest.mark.parametrize(
    ("kwargs", "message", "hint"),
    [
        ({"retain": "CAP_CHOWN", "remove": "CAP_KILL"}, "cannot be used together", "--caps"),
        ({"retain": ""}, "the capability set is empty", "at least one"),
        ({"remove": "CAP_KILL,"}, "unknown capability ''", "CAP_NET_ADMIN"),
        ({"retain": "net_admin"}, "unknown capability 'net_admin'", "CAP_NET_ADMIN?"),
    ],
)
def test_cli_refuses(kwargs: dict[str, str], message: str, hint: str) -> None:
    with pytest.raises(UserError, match=message) as info:
        caps_from_cli(**kwargs)
    assert hint in info.value.hint


def test_model_refuses_unknown_names() -> None:
    with pytest.raises(UserError):
        CapSet(frozenset({"CAP_FLY"}))


def _sets() -> dict[str, str]:
    return proc_status("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


@needs_root
def test_default_caps_are_what_the_kernel_reports() -> None:
    outcome = run_isolated(lambda: apply_caps(default_caps()), _sets)
    want = f"{DEFAULT_MASK:016x}"
    assert outcome == Outcome(
        "ok", {"CapInh": want, "CapPrm": want, "CapEff": want, "CapBnd": want, "CapAmb": "0" * 16}
    )


@needs_root
def test_without_sys_admin_mount_and_unshare_fail(tmp_path: Path) -> None:
    target = tmp_path / "mnt"
    target.mkdir()
    try:
        assert run_isolated(lambda: apply_caps(default_caps()), lambda: mount_tmpfs(target)) == (
            Outcome("errno", errno.EPERM)
        )
    finally:  # had the mount worked, it would sit in the host's mount namespace
        if os.path.ismount(target):
            libc_call("umount2", str(target).encode(), ctypes.c_int(2))
    outcome = run_isolated(lambda: apply_caps(default_caps()), lambda: unshare(CLONE_NEWNS))
    assert outcome.errno == errno.EPERM


@needs_root
def test_removed_cap_is_gone_kept_cap_works(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.touch()
    chown = lambda: os.chown(target, 4321, 4321)  # noqa: E731
    assert run_isolated(lambda: apply_caps(default_caps()), chown) == Outcome("ok", None)
    no_chown = caps_from_cli(remove="CAP_CHOWN")
    assert run_isolated(lambda: apply_caps(no_chown), chown).errno == errno.EPERM


@needs_root
def test_caps_the_caller_lacks_are_reported_unavailable() -> None:
    """The child first loses CAP_SYS_NICE, as this machine's root lacks CAP_SYS_RESOURCE."""
    wanted = caps_from_cli(retain="CAP_SYS_NICE,CAP_CHOWN")

    def probe() -> list[list[str] | str]:
        applied = apply_caps(wanted)
        return [sorted(applied.granted), sorted(applied.unavailable), _sets()["CapBnd"]]

    outcome = run_isolated(lambda: libc_call("prctl", PR_CAPBSET_DROP, CAP_SYS_NICE), probe)
    assert outcome == Outcome("ok", [["CAP_CHOWN"], ["CAP_SYS_NICE"], f"{1:016x}"])


@needs_root
def test_host_bounding_set_limits_what_is_granted() -> None:
    """On this machine kind CAP_SYS_RESOURCE is never available: it comes back unavailable."""
    held = int(proc_status("CapBnd")["CapBnd"], 16)
    wanted = caps_from_cli(retain="CAP_SYS_RESOURCE,CAP_KILL")
    outcome = run_isolated(lambda: None, lambda: sorted(apply_caps(wanted).unavailable))
    expected = [] if held >> 24 & 1 else ["CAP_SYS_RESOURCE"]
    assert outcome == Outcome("ok", expected)


@needs_root
def test_unprivileged_caller_fails_closed() -> None:
    outcome = run_isolated(lambda: os.setuid(65534), lambda: apply_caps(default_caps()))
    assert outcome.kind == "error"
    assert str(outcome.value).startswith("PolicyViolationError: cannot restrict capabilities")


@needs_root
def test_everything_applies_inside_an_empty_rootfs(tmp_path: Path) -> None:
    """The executor's child applies isolation after pivot_root, where the host's Python
    modules and libseccomp.so are out of reach: nothing may be imported or read there."""
    spec = default_spec()

    def setup() -> None:
        os.chroot(tmp_path)
        os.chdir("/")
        apply_caps(default_caps())
        apply_seccomp(spec)

    assert run_isolated(setup, lambda: [p.name for p in Path("/").iterdir()]) == Outcome("ok", [])

"""Seccomp parsers: appc isolators, rkt's --seccomp, wildcards, digests (no filter is loaded)."""

from __future__ import annotations

import errno
import json
import re
from importlib import resources
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustd.shared.errors import UserError
from trustd.shared.isolation import (
    SeccompSpec,
    default_spec,
    seccomp_from_cli,
    seccomp_from_isolator,
    spec_digest,
)

RETAIN = "os/linux/seccomp-retain-set"
REMOVE = "os/linux/seccomp-remove-set"


def test_default_is_rkt_whitelist_that_kills() -> None:
    spec = default_spec()
    assert spec.mode == "retain"
    assert spec.errno is None
    assert {"newfstatat", "read", "write", "execve", "exit_group"} <= spec.syscalls
    assert not {"mount", "unshare", "reboot", "kexec_load"} & spec.syscalls
    assert "@rkt/default-whitelist" in spec.source


def test_names_absent_on_this_arch_are_skipped() -> None:
    """``chown32``/``stime`` exist on i386 only; ARM extras only on arm: all skipped here."""
    assert not {"chown32", "fcntl64", "set_tls", "cacheflush"} & default_spec().syscalls
    black = seccomp_from_cli("mode=remove,@rkt/default-blacklist").syscalls
    assert {"mount", "umount2", "unshare", "ptrace", "reboot"} <= black
    assert not {"stime", "umount", "vm86", "vm86old"} & black


@pytest.mark.parametrize(
    ("wildcard", "mode", "expected_mode", "must_have"),
    [
        ("@rkt/default-whitelist", "retain", "retain", "newfstatat"),
        ("@docker/default-whitelist", "retain", "retain", "newfstatat"),
        ("@rkt/default-blacklist", "remove", "remove", "mount"),
        ("@docker/default-blacklist", "remove", "remove", "mount"),
        ("@appc.io/empty", "remove", "retain", "newfstatat"),  # opt-in: rkt default
        ("@appc.io/empty", "retain", "retain", "newfstatat"),  # rkt does the same here
        ("@appc.io/all", "retain", "remove", None),  # opt-out: nothing refused
    ],
)
def test_wildcards(wildcard: str, mode: str, expected_mode: str, must_have: str | None) -> None:
    spec = seccomp_from_cli(f"mode={mode},{wildcard}")
    assert spec.mode == expected_mode
    if must_have is None:
        assert spec.refuses_nothing
    else:
        assert must_have in spec.syscalls


def test_rkt_and_docker_whitelists_agree_on_x86_64_names() -> None:
    rkt = seccomp_from_cli("mode=retain,@rkt/default-whitelist").syscalls
    docker = seccomp_from_cli("mode=retain,@docker/default-whitelist").syscalls
    assert rkt >= docker
    assert len(docker) > 250


@pytest.mark.parametrize(
    ("text", "mode", "names", "err"),
    [
        ("mode=remove,errno=ENOTSUP,chmod,chown", "remove", {"chmod", "chown"}, errno.ENOTSUP),
        ("chmod,mode=remove", "remove", {"chmod"}, None),
        ("mode=retain,@rkt/default-whitelist,errno=EPERM", "retain", {"newfstatat"}, errno.EPERM),
        ("mode=remove,errno=EXFULL,newfstatat", "remove", {"newfstatat"}, errno.EXFULL),
        ("mode=remove,errno=,socket", "remove", {"socket"}, None),
        ("mode=remove,chmod,@rkt/default-blacklist", "remove", {"chmod", "mount"}, None),
    ],
)
def test_cli_accepts(text: str, mode: str, names: set[str], err: int | None) -> None:
    spec = seccomp_from_cli(text)
    assert spec.mode == mode
    assert names <= spec.syscalls
    assert spec.errno == err
    assert spec.source == f"--seccomp {text}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty item"),
        ("chmod", "invalid seccomp mode command-line override"),
        ("mode=allow,chmod", "invalid seccomp mode command-line override"),
        ("mode=remove", "the syscall set is empty"),
        ("mode=remove,,chmod", "empty item"),
        ("mode=remove,mode=retain,chmod", "unexpected 'mode=retain'"),
        ("mode=remove,errno=EPERM,errno=EIO,chmod", "unexpected 'errno=EIO'"),
        ("mode=remove,foo=bar,chmod", "invalid seccomp command-line override"),
        ("mode=remove,errno=eperm,chmod", "unknown errno 'eperm'"),
        ("mode=remove,errno=ENOPE,chmod", "unknown errno 'ENOPE'"),
        ("mode=remove,chmod,no_such_call", "unknown syscall name(s): 'no_such_call'"),
        ("mode=remove,CHMOD", "'CHMOD'"),
        ("mode=remove,chmod\x00", "unknown syscall"),
        ("mode=remove,@rkt/nope", "unknown seccomp wildcard(s): '@rkt/nope'"),
        ("mode=remove,@systemd/clock", "'@systemd/clock'"),
        ("mode=remove,@appc.io/all", "only makes sense alone in a retain-set"),
        ("mode=retain,@appc.io/all,@appc.io/empty", "only makes sense alone"),
        ("mode=retain,@appc.io/all,chmdo", "unknown syscall name(s): 'chmdo'"),
        ("mode=remove,@appc.io/empty,@rkt/typo", "'@rkt/typo'"),
    ],
)
def test_cli_refuses(text: str, message: str) -> None:
    with pytest.raises(UserError) as info:
        seccomp_from_cli(text)
    assert message in str(info.value)
    assert info.value.hint


def test_unknown_names_are_all_named_at_once() -> None:
    with pytest.raises(UserError, match="'bogus_a', 'bogus_b'"):
        seccomp_from_cli("mode=remove,bogus_b,chmod,bogus_a")


@pytest.mark.parametrize(
    ("name", "value", "mode", "names", "err"),
    [
        (REMOVE, {"set": ["clock_adjtime", "reboot"], "errno": "ENOTSUP"}, "remove",
         {"clock_adjtime", "reboot"}, errno.ENOTSUP),
        (RETAIN, {"set": ["accept", "read", "write"], "errno": ""}, "retain",
         {"accept", "read", "write"}, None),
        (RETAIN, {"set": ["read"]}, "retain", {"read"}, None),
        (REMOVE, {"set": ["reboot"], "x-vendor": 1}, "remove", {"reboot"}, None),
        (REMOVE, {"set": ["@appc.io/empty", "reboot"], "errno": "EPERM"}, "retain",
         {"newfstatat"}, errno.EPERM),
    ],
)  # fmt: skip
def test_isolator_accepts(
    name: str, value: dict[str, Any], mode: str, names: set[str], err: int | None
) -> None:
    spec = seccomp_from_isolator(name, value)
    assert (spec.mode, spec.errno) == (mode, err)
    assert names <= spec.syscalls
    assert spec.source.startswith(f"isolator {name}")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("os/linux/seccomp-set", {"set": ["read"]}, "is not a seccomp isolator"),
        (REMOVE, {}, "'set' must be a list"),
        (REMOVE, {"set": "reboot"}, "'set' must be a list"),
        (REMOVE, {"set": [1]}, "'set' must be a list"),
        (REMOVE, {"set": []}, "the syscall set is empty"),
        (REMOVE, {"set": ["reboot"], "errno": 1}, "'errno' must be a string"),
        (REMOVE, {"set": ["reboot"], "errno": "EWHAT"}, "unknown errno 'EWHAT'"),
        (RETAIN, {"set": ["read", "nosuchsyscall"]}, "'nosuchsyscall'"),
    ],
)
def test_isolator_refuses(name: str, value: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        seccomp_from_isolator(name, value)


def test_isolator_value_must_be_an_object() -> None:
    with pytest.raises(UserError, match="value must be an object"):
        seccomp_from_isolator(REMOVE, ["reboot"])  # type: ignore[arg-type]


def test_spec_model_checks_itself() -> None:
    with pytest.raises(UserError):
        SeccompSpec("deny", frozenset())  # type: ignore[arg-type]
    with pytest.raises(UserError):
        SeccompSpec("remove", frozenset({"chmod"}), errno=0)
    assert SeccompSpec("remove", frozenset(), errno.ENOTSUP).errno_name == "ENOTSUP"


def test_digest_measures_enforcement_not_wording() -> None:
    a = seccomp_from_cli("mode=remove,errno=ENOTSUP,chmod,chown")
    b = seccomp_from_isolator(REMOVE, {"set": ["chown", "chmod"], "errno": "ENOTSUP"})
    c = seccomp_from_cli("mode=remove,errno=EPERM,chmod,chown")
    d = seccomp_from_cli("mode=retain,errno=ENOTSUP,chmod,chown")
    assert a.source != b.source
    assert spec_digest(a) == spec_digest(b)
    assert len({spec_digest(a), spec_digest(c), spec_digest(d)}) == 3
    assert re.fullmatch(r"sha256-[0-9a-f]{64}", spec_digest(default_spec()))
    assert spec_digest(default_spec()) == spec_digest(default_spec())


def test_syscall_sets_ship_as_package_data_with_attribution() -> None:
    path = resources.files("trustd.shared.isolation").joinpath("seccomp_sets.json")
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["_attribution"]["license"] == "Apache-2.0"
    assert "rkt/rkt" in doc["_attribution"]["origin"]
    assert len(doc["sets"]["@docker/default-whitelist"]) == 309


_TOKENS = st.sampled_from(
    [
        "mode=retain",
        "mode=remove",
        "mode=",
        "errno=EPERM",
        "errno=",
        "errno=eperm",
        "=",
        "",
        "chmod",
        "newfstatat",
        "chown32",
        "nosuch",
        "@rkt/default-whitelist",
        "@appc.io/all",
        "@appc.io/empty",
        "@",
        "@x/y",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.lists(st.one_of(_TOKENS, st.text())).map(",".join)))
def test_cli_parser_raises_only_user_errors(text: str) -> None:
    try:
        spec = seccomp_from_cli(text)
    except UserError:
        return
    assert spec.mode in ("retain", "remove")
    assert all(re.fullmatch(r"[a-z0-9_]+", n) for n in spec.syscalls)

"""Docker-format seccomp profiles: moby's and containers/common's load and resolve."""

from __future__ import annotations

import contextlib
import errno
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.policy._helpers import FIXTURES
from trustd.shared.isolation.caps import DEFAULT_CAPS
from trustd.shared.policy._profiles import SHIPPED_DIR
from trustd.shared.policy.seccomp_profile import (
    SeccompProfileError,
    load_profile,
    parse_profile,
    resolve,
)


@pytest.mark.parametrize("name", ["moby-default", "containers-default"])
def test_shipped_profiles_load(name: str) -> None:
    profile = load_profile(SHIPPED_DIR / f"{name}.json")
    assert profile.default_action == "SCMP_ACT_ERRNO"
    assert profile.digest.startswith("sha256-")
    assert len(profile.rules) > 25
    f = resolve(profile, arch="amd64", caps=DEFAULT_CAPS, kernel=(6, 1))
    assert {"read", "write", "execve"} <= f.allowed


def test_moby_profile_semantics() -> None:
    profile = load_profile(SHIPPED_DIR / "moby-default.json")
    assert profile.default_errno == errno.EPERM
    plain = resolve(profile, arch="amd64", caps=DEFAULT_CAPS, kernel=(6, 1))
    assert "reboot" not in plain.allowed  # includes.caps: CAP_SYS_BOOT
    admin = resolve(profile, arch="amd64", caps=DEFAULT_CAPS | {"CAP_SYS_ADMIN"}, kernel=(6, 1))
    assert "mount" not in plain.allowed  # includes.caps: CAP_SYS_ADMIN
    assert "mount" in admin.allowed
    personality = [r for r in plain.conditional if r.name == "personality"]
    assert {r.args[0].value for r in personality} >= {0, 8}
    assert all(r.args[0].op == "SCMP_CMP_EQ" for r in personality)
    arm = resolve(profile, arch="arm64", caps=DEFAULT_CAPS, kernel=(6, 1))
    assert "arch_prctl" in plain.allowed and "arch_prctl" not in arm.allowed


def test_containers_common_profile_semantics() -> None:
    profile = load_profile(SHIPPED_DIR / "containers-default.json")
    assert profile.default_errno == errno.ENOSYS  # defaultErrnoRet 38
    f = resolve(profile, arch="amd64", caps=DEFAULT_CAPS, kernel=(6, 1))
    assert "bdflush" in f.denied
    assert next(r for r in f.rules if r.name == "bdflush").errno == errno.EPERM
    # excludes.caps: with CAP_AUDIT_WRITE, socket is allowed outright
    assert "socket" in f.allowed
    no_audit = resolve(profile, arch="amd64", caps=DEFAULT_CAPS - {"CAP_AUDIT_WRITE"}, kernel=None)
    assert "socket" not in no_audit.allowed
    socket = [r for r in no_audit.conditional if r.name == "socket"]
    refused = [r for r in socket if r.action == "SCMP_ACT_ERRNO"]
    assert refused and refused[0].errno == errno.EINVAL
    assert [(a.index, a.value) for a in refused[0].args] == [(0, 16), (2, 9)]  # NETLINK_AUDIT


def test_upstream_example_fixture_loads() -> None:
    assert load_profile(FIXTURES / "example-profile.json").rules


_ARGS = '"names": ["a"], "action": "SCMP_ACT_ERRNO", "args": [%s]'


def _rule(body: str) -> bytes:
    return ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{' + body + "}]}").encode()


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        (b"not json", "Expecting value"),
        (b"[]", "JSON object"),
        (b'{"defaultAction": "SCMP_ACT_MAYBE"}', "unknown action"),
        (
            _rule('"names": [], "action": "SCMP_ACT_ALLOW"'),
            "names",
        ),
        (
            _rule(_ARGS % '{"index": 9, "op": "SCMP_CMP_EQ", "value": 1}'),
            "0..5",
        ),
        (
            _rule(_ARGS % '{"index": 0, "op": "SCMP_CMP_SIMILAR"}'),
            "operator",
        ),
        (b'{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrno": "EWHAT"}', "unknown errno"),
        (b'{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": "1"}', "integer"),
    ],
)
def test_bad_profiles_are_one_domain_error(doc: bytes, words: str) -> None:
    with pytest.raises(SeccompProfileError, match=words) as err:
        parse_profile(doc, "p.json")
    assert "p.json" in err.value.message


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12)),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(
                st.sampled_from(
                    [
                        "defaultAction",
                        "syscalls",
                        "names",
                        "action",
                        "args",
                        "index",
                        "op",
                        "value",
                        "errnoRet",
                        "includes",
                        "excludes",
                        "arches",
                        "caps",
                    ]
                ),
                inner,
                max_size=4,
            ),
        ),
        max_leaves=15,
    )
)
def test_arbitrary_json_only_raises_the_domain_error(doc: object) -> None:
    with contextlib.suppress(SeccompProfileError):
        parse_profile(json.dumps(doc).encode(), "fuzz.json")

"""Fetch and run decisions with real gpg keys in a real keystore: thresholds, key state,
pins and their windows, warn exceptions, and every run requirement."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import ConfigDirs, Keys
from tests.unit.policy._helpers import keystore, policy, trust, with_base
from trustd.shared.errors import PolicyViolationError
from trustd.shared.isolation.caps import DEFAULT_CAPS, from_cli
from trustd.shared.isolation.seccomp import default_spec, spec_digest
from trustd.shared.policy import RunInput, decide_fetch, decide_run

NOW = datetime.now(UTC)
LINE = re.compile(r"^(?P<scope>\S+): (?P<req>[a-z-]+) failed: .+; to satisfy: .+$")


def _sigpolicy(require: str, extra: str = "") -> str:
    return f'[scopes."example.com/app".require]\n{require}\n{extra}'


@pytest.fixture
def ks(config_dirs: ConfigDirs, keys: Keys) -> ConfigDirs:
    trust(config_dirs, keys, keys.good, "example.com/app")
    trust(config_dirs, keys, keys.rsa, "example.com/app")
    trust(config_dirs, keys, keys.revoked, "example.com/app")
    trust(config_dirs, keys, keys.expired, "example.com/app")
    trust(config_dirs, keys, keys.weak, "example.com/ap")  # a string prefix, not a segment
    return config_dirs


@pytest.mark.parametrize(
    ("threshold", "signers", "verdict"),
    [
        (1, ["good"], "allow"),
        (1, [], "deny"),
        (2, ["good"], "deny"),
        (2, ["good", "rsa"], "allow"),
        (2, ["good", "good"], "deny"),  # the same key twice counts once (TUF, GHSA-r7vq)
        (2, ["good", "revoked"], "deny"),
        (2, ["good", "expired"], "deny"),
        (1, ["weak"], "deny"),  # trusted for example.com/ap only: not a whole segment
        (3, ["good", "rsa", "revoked", "expired"], "deny"),
    ],
)
def test_threshold_counts_distinct_usable_trusted_signers(
    ks: ConfigDirs, keys: Keys, threshold: int, signers: list[str], verdict: str
) -> None:
    p = with_base(_sigpolicy(f"threshold = {threshold}"))
    fprs = tuple(getattr(keys, s).lower() for s in signers)
    d = decide_fetch(p, "example.com/app", fprs, keystore(ks), NOW)
    assert d.verdict == verdict, d.explain()
    assert d.scope == "example.com/app"
    assert d.shadowed == ("default",)
    if verdict == "deny":
        assert LINE.match(d.explain()), d.explain()
        assert d.failed[0].requirement == "signature"


@pytest.mark.parametrize(
    ("signer", "words"),
    [
        ("revoked", "has been revoked"),
        ("expired", "expired on 2020-01-02"),
        ("weak", "is not trusted for this scope"),
    ],
)
def test_refused_signers_say_why(ks: ConfigDirs, keys: Keys, signer: str, words: str) -> None:
    p = with_base("")
    d = decide_fetch(p, "example.com/app", (getattr(keys, signer).lower(),), keystore(ks), NOW)
    assert d.verdict == "deny"
    assert words in d.checks[0].reason
    assert 'rkt trust --prefix "example.com/app"' in d.checks[0].fix


@pytest.mark.parametrize(
    ("window", "verdict", "words"),
    [
        ("", "allow", "pinned"),
        (f"not_before = {(NOW + timedelta(days=1)).isoformat()}", "deny", "pinned only from"),
        (f"not_after = {(NOW - timedelta(days=1)).isoformat()}", "deny", "pinned only until"),
        (
            f"not_before = {(NOW - timedelta(days=1)).isoformat()}, "
            f"not_after = {(NOW + timedelta(days=1)).isoformat()}",
            "allow",
            "pinned",
        ),
    ],
)
def test_pinned_fingerprints_and_their_window(
    ks: ConfigDirs, keys: Keys, window: str, verdict: str, words: str
) -> None:
    pin = f'{{fingerprint = "{keys.good.lower()}"{", " + window if window else ""}}}'
    p = with_base(_sigpolicy(f"keystore = false\nfingerprints = [{pin}]"))
    d = decide_fetch(p, "example.com/app", (keys.good.lower(),), keystore(ks), NOW)
    assert d.verdict == verdict
    assert words in d.checks[0].reason


def test_keystore_false_ignores_keystore_trust(ks: ConfigDirs, keys: Keys) -> None:
    pin = f'{{fingerprint = "{keys.good.lower()}"}}'
    p = with_base(_sigpolicy(f"keystore = false\nfingerprints = [{pin}]"))
    d = decide_fetch(p, "example.com/app", (keys.rsa.lower(),), keystore(ks), NOW)
    assert d.verdict == "deny"
    assert "pinned key" in d.checks[0].fix


def test_pinned_key_must_be_in_the_keystore(config_dirs: ConfigDirs, keys: Keys) -> None:
    pin = f'{{fingerprint = "{keys.good.lower()}"}}'
    p = with_base(_sigpolicy(f"keystore = false\nfingerprints = [{pin}]"))
    d = decide_fetch(p, "example.com/app", (keys.good.lower(),), keystore(config_dirs), NOW)
    assert d.verdict == "deny"
    assert "not in the keystore" in d.checks[0].reason


@pytest.mark.parametrize(
    ("rtype", "verdict"), [("reject", "deny"), ("accept-anything", "allow"), ("signed", "deny")]
)
def test_requirement_types(ks: ConfigDirs, rtype: str, verdict: str) -> None:
    p = with_base(_sigpolicy(f'type = "{rtype}"'))
    assert decide_fetch(p, "example.com/app", (), keystore(ks), NOW).verdict == verdict


@pytest.mark.parametrize(("allowed", "verdict"), [('["image"]', "allow"), ("[]", "deny")])
def test_insecure_image_needs_the_scope_to_allow_it(
    ks: ConfigDirs, allowed: str, verdict: str
) -> None:
    p = with_base(f'[scopes."example.com/app".run]\ninsecure_options = {allowed}\n')
    d = decide_fetch(p, "example.com/app", (), keystore(ks), NOW, insecure_image=True)
    assert d.verdict == verdict


def test_a_fetch_refusal_explains_by_name_never_by_an_id_not_stored(ks: ConfigDirs) -> None:
    """issue #12: "see why: rkt policy explain sha512-…" failed, the image was never stored."""
    p = with_base("")
    d = decide_fetch(p, "example.com/app:1.0", (), keystore(ks), NOW, image_id="sha512-" + "a" * 64)
    with pytest.raises(PolicyViolationError) as err:
        d.enforce()
    assert err.value.hint == "see why: rkt policy explain example.com/app:1.0"


@pytest.mark.parametrize(
    ("expires", "verdict", "note"),
    [
        (NOW + timedelta(days=3), "warn", "until"),
        (NOW - timedelta(seconds=1), "deny", "expired"),
    ],
)
def test_warn_mode_warns_until_the_exception_expires_then_enforces(
    ks: ConfigDirs, expires: datetime, verdict: str, note: str
) -> None:
    p = with_base(
        '[scopes."example.com/app"]\nmode = "warn"\n'
        f'exception = {{ owner = "ops@example.com", expires = {expires.isoformat()} }}\n'
    )
    d = decide_fetch(p, "example.com/app", (), keystore(ks), NOW)
    assert d.verdict == verdict
    assert note in d.note
    assert "ops@example.com" in d.note


def test_warn_mode_allows_when_nothing_fails(ks: ConfigDirs, keys: Keys) -> None:
    p = with_base(
        '[scopes."example.com/app"]\nmode = "warn"\n'
        f'exception = {{ owner = "ops", expires = {(NOW + timedelta(days=1)).isoformat()} }}\n'
    )
    d = decide_fetch(p, "example.com/app", (keys.good.lower(),), keystore(ks), NOW)
    assert d.verdict == "allow"


def _run(keys: Keys, **over: object) -> RunInput:
    base: dict[str, object] = {
        "image_name": "example.com/app:1.0",
        "image_id": "sha512-" + "ab" * 32,
        "signers": (keys.good.lower(),),
        "insecure_image": False,
        "flavor": "container",
        "seccomp_digest": spec_digest(default_spec()),
        "seccomp_source": "rkt default",
        "capabilities": ("CAP_CHOWN", "CAP_KILL"),
        "insecure_options": (),
        "measurement": "required",
        "selinux": "off",
    }
    return RunInput(**{**base, **over})  # type: ignore[arg-type]


RUN_POLICY = """
version = 1
[default]
measure = "required"
[default.run]
"""


def run_policy(extra: str = "") -> str:
    """RUN_POLICY with ``extra`` keys in [default.run]; selinux permissive unless given."""
    return RUN_POLICY + extra + ("" if "selinux" in extra else 'selinux = "permissive"\n')


@pytest.mark.parametrize(
    ("over", "extra", "failed"),
    [
        ({}, "", None),
        ({"flavor": "fly"}, "", "flavor"),
        ({"flavor": "fly"}, 'flavors = ["fly"]\n', None),
        ({"seccomp_digest": "sha256-" + "0" * 64}, "", "seccomp"),
        ({"seccomp_digest": None}, "", "seccomp"),
        ({"seccomp_digest": "sha256-" + "0" * 64}, 'seccomp = ["any"]\n', None),
        ({"capabilities": ("CAP_SYS_ADMIN",)}, "", "capabilities"),
        ({"capabilities": None}, "", "capabilities"),
        ({"no_new_privileges": False}, "", "no-new-privileges"),
        ({"no_new_privileges": False}, "allow_new_privileges = true\n", None),
        ({"insecure_options": ("seccomp",)}, "", "insecure-options"),
        (
            {"insecure_options": ("capabilities",), "capabilities": None},
            'insecure_options = ["capabilities"]\n',
            None,
        ),
        ({"measurement": "best-effort"}, "", "measurement"),
        ({"selinux": "off"}, 'selinux = "enforce"\n', "selinux"),
        ({"selinux": "enforce"}, 'selinux = "enforce"\n', None),
        ({}, 'private_users = "required"\n', "private-users"),
        ({"private_users": True}, 'private_users = "required"\n', None),
        ({"private_users": True}, "", None),
        ({"signers": ()}, "", "signature"),
        ({"networks": ("default",)}, "", None),
        ({"networks": ("host",)}, "", "networks"),
        ({"networks": ("host",)}, 'networks = ["*"]\n', "networks"),
        ({"networks": ("host",)}, 'networks = ["host"]\n', None),
        ({"networks": ("lan", "default-restricted")}, "", "networks"),
        ({"networks": ("lan", "default-restricted")}, 'networks = ["*"]\n', None),
        ({"networks": ("default",)}, 'networks = ["none"]\n', "networks"),
        ({"networks": ("host",), "flavor": "fly"}, 'flavors = ["fly"]\n', None),
    ],
)
def test_run_requirements(
    ks: ConfigDirs, keys: Keys, over: dict[str, object], extra: str, failed: str | None
) -> None:
    p = policy(run_policy(extra))
    d = decide_run(p, _run(keys, **over), keystore(ks), NOW)
    if failed is None:
        assert d.verdict == "allow", d.explain()
        assert d.explain() == "default: all requirements met"
        d.enforce()
        return
    assert d.verdict == "deny"
    assert d.failed[0].requirement == failed
    m = LINE.match(d.explain())
    assert m and m["scope"] == "default" and m["req"] == failed
    with pytest.raises(PolicyViolationError) as err:
        d.enforce()
    assert "refused by policy" in err.value.message
    assert "rkt policy explain" in err.value.hint


def test_permissive_selinux_records_the_gap(ks: ConfigDirs, keys: Keys) -> None:
    d = decide_run(policy(run_policy()), _run(keys), keystore(ks), NOW)
    selinux = next(c for c in d.checks if c.requirement == "selinux")
    assert selinux.passed and "gap recorded" in selinux.reason


def test_named_docker_profile_matches_its_file_digest(ks: ConfigDirs, keys: Keys) -> None:
    from trustd.shared.policy._profiles import SHIPPED_DIR  # noqa: PLC0415
    from trustd.shared.policy.seccomp_profile import load_profile  # noqa: PLC0415

    digest = load_profile(SHIPPED_DIR / "moby-default.json").digest
    p = policy(run_policy('seccomp = ["moby-default"]\n'))
    d = decide_run(p, _run(keys, seccomp_digest=digest), keystore(ks), NOW)
    assert d.verdict == "allow", d.explain()


def test_decision_json_round_trips(ks: ConfigDirs, keys: Keys) -> None:
    d = decide_run(policy(run_policy()), _run(keys), keystore(ks), NOW)
    doc = d.to_json()
    assert doc["verdict"] == "allow"
    assert doc["gate"] == "run"
    assert doc["policy"]["digest"].startswith("sha256-")
    assert {c["requirement"] for c in doc["checks"]} == {
        "signature",
        "flavor",
        "seccomp",
        "host-namespaces",
        "capabilities",
        "selinux",
        "private-users",
        "insecure-options",
        "no-new-privileges",
        "measurement",
        "networks",
    }


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("retain", "CAP_SYS_ADMIN"),
        ("retain", "CAP_SYS_ADMIN,CAP_NET_BIND_SERVICE"),
        ("remove", "CAP_KILL"),
        (None, None),
    ],
)
def test_the_capability_fix_is_a_flag_that_then_passes(
    ks: ConfigDirs, keys: Keys, flag: str | None, value: str | None
) -> None:
    """Issue #15: the hinted flag, parsed as rkt run parses it, gives a set the gate allows."""
    allowed = sorted(DEFAULT_CAPS - {"CAP_NET_RAW"})
    p = policy(run_policy(f"capabilities = {json.dumps(allowed)}\n"))
    given = from_cli(**{flag: value}) if flag else from_cli()
    req = _run(keys, capabilities=tuple(given.sorted_names()))
    denied = decide_run(p, req, keystore(ks), NOW)
    assert denied.failed[0].requirement == "capabilities"
    hinted = re.search(r"run with --caps-(retain|remove)=(\S+?),? or", denied.explain())
    assert hinted, denied.explain()
    fixed = from_cli(**{hinted[1]: hinted[2]})
    again = decide_run(p, _run(keys, capabilities=tuple(fixed.sorted_names())), keystore(ks), NOW)
    assert again.verdict == "allow", again.explain()

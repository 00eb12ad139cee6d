"""Every lint rule has a failing and a passing fixture (tests/unit/policy/fixtures/)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import ConfigDirs, Keys
from tests.unit.policy._helpers import FIXTURES, keystore, trust
from tests.unit.policy.test_lint_runtime import RUNTIME_RULES
from trustd.shared.policy import loads_policy
from trustd.shared.policy.findings import RULES
from trustd.shared.policy.lint import lint

RULE_FIXTURES = {
    "TD-POL-001": "default-not-reject",
    "TD-POL-002": "child-weaker",
    "TD-POL-003": "scope-shadowed",
    "TD-POL-004": "key-missing",
    "TD-POL-005": "key-expired",
    "TD-POL-006": "key-revoked",
    "TD-POL-007": "key-expiring",
    "TD-POL-008": "warn-exception-expired",
    "TD-POL-009": "seccomp-unloadable",
    "TD-POL-010": "threshold-unreachable",
    "TD-POL-011": "key-weak",
    "TD-POL-012": "warn-exception-active",
    "TD-POL-024": "docker-name-mangled",
    "TD-POL-025": "signature-weaker",
    "TD-POL-026": "identity-ineffective",
    "TD-POL-027": "docker-names-share-a-store-name",
    "TD-POL-028": "layout-name-without-key",
    "TD-POL-029": "layout-name-admits-unsigned",
}


def test_every_policy_rule_has_fixtures() -> None:
    # the run-time rules share one failing fixture (weak.toml) and the shipped default passes
    covered = set(RULE_FIXTURES) | set(RUNTIME_RULES)
    assert covered == {r for r in RULES if r.startswith("TD-POL-") and r != "TD-POL-000"}


@pytest.fixture
def ks(config_dirs: ConfigDirs, keys: Keys) -> ConfigDirs:
    trust(config_dirs, keys, keys.good, "example.com/app")
    for fpr in (keys.revoked, keys.expired, keys.weak):
        trust(config_dirs, keys, fpr, "other.org/keys")  # in the keystore, not in any scope
    layouts = config_dirs.local / "trustedkeys/docker.d/registry.example.com/layouts"
    layouts.mkdir(parents=True)  # a docker:// prefix key, for the [layouts] rules
    (layouts / keys.good.lower()).write_bytes(keys.public(keys.good))
    return config_dirs


def _load(name: str, keys: Keys, now: datetime) -> object:
    path = FIXTURES / f"{name}.toml"
    text = path.read_text()
    for key, value in {
        "{good}": keys.good.lower(),
        "{revoked}": keys.revoked.lower(),
        "{expired}": keys.expired.lower(),
        "{weak}": keys.weak.lower(),
        "{absent}": "b" * 40,
        "{soon}": (now + timedelta(days=10)).isoformat(),
        "{later}": (now + timedelta(days=90)).isoformat(),
        "{past}": (now - timedelta(days=1)).isoformat(),
    }.items():
        text = text.replace(key, value)
    return loads_policy(text.encode(), str(path))


@pytest.mark.parametrize(
    ("rule", "outcome"), [(r, o) for r in RULE_FIXTURES for o in ("fail", "pass")]
)
def test_rule_fires_on_fail_fixture_only(
    ks: ConfigDirs, keys: Keys, rule: str, outcome: str
) -> None:
    now = datetime.now(UTC)
    p = _load(f"{RULE_FIXTURES[rule]}-{outcome}", keys, now)
    findings = lint(p, keystore(ks), now)  # type: ignore[arg-type]
    hits = [f for f in findings if f.rule_id == rule]
    if outcome == "fail":
        assert hits, [f.to_json() for f in findings]
        assert all(h.message for h in hits)
    else:
        assert not hits, [h.to_json() for h in hits]


def test_findings_carry_controls_and_are_sorted(ks: ConfigDirs, keys: Keys) -> None:
    now = datetime.now(UTC)
    findings = lint(_load("default-not-reject-fail", keys, now), keystore(ks), now)  # type: ignore[arg-type]
    doc = findings[0].to_json()
    assert doc["rule_id"] == "TD-POL-001"
    assert doc["severity"] == "high"  # accept-anything default
    assert doc["controls"] == [
        "CIS-Docker-4.5",
        "CIS-Kubernetes-5.5.1",
        "DISA-SRG-V-233065",
        "NIST-800-190-4.1.5",
    ]
    assert doc["location"] == {"key": "default.require.type", "line": 5, "column": 1}

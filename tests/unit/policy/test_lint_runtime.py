"""Run-time weaknesses: each rule fires once on a deliberately weak policy, located in the file,
with a severity, a fix and the controls it evidences; the shipped default is lint-clean."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests._policy import SHIPPED
from tests.conftest import ConfigDirs, Keys
from tests.unit.policy._helpers import FIXTURES, keystore, policy, trust
from trustd.shared.policy import load_policy
from trustd.shared.policy.findings import CONTROLS, RULES
from trustd.shared.policy.lint import lint

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
WEAK = FIXTURES / "weak.toml"

# rule -> (severity, a control it must map to, the text its location points at)
RUNTIME_RULES: dict[str, tuple[str, str, str]] = {
    "TD-POL-013": ("medium", "NIST-800-190-4.6", 'measure = "off"'),
    "TD-POL-014": ("high", "CIS-Docker-5.21", '"unconfined"'),
    "TD-POL-015": ("medium", "CIS-Docker-5.21", '"any"'),
    "TD-POL-016": ("high", "CIS-Docker-5.3", '"CAP_SYS_ADMIN"'),
    "TD-POL-017": ("medium", "CIS-Docker-5.2", 'selinux = "off"'),
    "TD-POL-018": ("high", "CIS-Docker-5.4", '"fly"'),
    "TD-POL-019": ("high", "CIS-Docker-4.5", '"image"'),
    "TD-POL-020": ("high", "NIST-800-190-4.2.1", '"tls"'),
    "TD-POL-021": ("high", "NIST-800-190-4.4.3", '"capabilities"'),
    "TD-POL-022": ("high", "NIST-800-190-4.1.5", 'type = "accept-anything"'),
    "TD-POL-023": ("high", "CIS-Docker-5.9", '"host"'),
}


@pytest.fixture
def empty(config_dirs: ConfigDirs) -> ConfigDirs:
    return config_dirs


@pytest.mark.parametrize("rule", sorted(RUNTIME_RULES))
def test_weak_policy_yields_each_rule_once(empty: ConfigDirs, rule: str) -> None:
    found = [f for f in lint(load_policy(WEAK), keystore(empty), NOW) if f.rule_id == rule]
    assert len(found) == 1, [f.to_json() for f in found]
    (hit,) = found
    severity, control, points_at = RUNTIME_RULES[rule]
    assert hit.severity == severity
    assert hit.fix
    assert control in hit.to_json()["controls"]
    lines = WEAK.read_text().splitlines()
    assert hit.line is not None
    assert hit.column is not None
    assert lines[hit.line - 1][hit.column - 1 :].startswith(points_at), (hit.line, hit.column)
    assert hit.to_json()["location"]["line"] == hit.line


def test_dangerous_capabilities_are_named(empty: ConfigDirs) -> None:
    found = [f for f in lint(load_policy(WEAK), keystore(empty), NOW) if f.rule_id == "TD-POL-016"]
    for cap in ("CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_PTRACE", "CAP_NET_ADMIN"):
        assert cap in found[0].message


def test_every_control_is_documented() -> None:
    for rule in RULES.values():
        for control in rule.controls:
            assert control in CONTROLS, (rule.id, control)


def test_a_scope_reports_only_what_it_adds_to_the_default(empty: ConfigDirs) -> None:
    p = policy(
        """
version = 1
[default.run]
flavors = ["container", "fly"]
[scopes."example.com/app"]
measure = "best-effort"
[scopes."example.com/app".run]
flavors = ["container", "fly"]
capabilities = ["CAP_CHOWN", "CAP_NET_ADMIN"]
"""
    )
    found = {(f.rule_id, f.subject, f.severity) for f in lint(p, keystore(empty), NOW)}
    assert ("TD-POL-018", "default", "high") in found
    assert ("TD-POL-018", "example.com/app", "high") not in found  # the default's finding says it
    assert ("TD-POL-016", "example.com/app", "high") in found
    assert ("TD-POL-013", "example.com/app", "low") in found  # best-effort is low


def test_shipped_default_is_lint_clean(empty: ConfigDirs, keys: Keys) -> None:
    shipped = load_policy(SHIPPED)
    assert lint(shipped, keystore(empty), NOW) == []
    trust(empty, keys, keys.good, "example.com/app")  # a prefix key vouches for its names only
    assert lint(shipped, keystore(empty), NOW) == []


def test_a_root_key_makes_the_signed_default_open(empty: ConfigDirs, keys: Keys) -> None:
    trust(empty, keys, keys.good, None)
    (hit,) = lint(load_policy(SHIPPED), keystore(empty), NOW)
    assert (hit.rule_id, hit.severity) == ("TD-POL-001", "low")
    assert "keystore root" in hit.message

"""Audit findings: stable rule IDs, severities and the compliance controls they evidence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "low", "medium", "high", "critical")

# CIS Docker 4.5 (content trust), CIS Kubernetes 5.5.1 (image provenance),
# DISA Container Platform SRG V-233065 (must verify container images).
TRUST_CONTROLS: tuple[str, ...] = ("CIS-Docker-4.5", "CIS-Kubernetes-5.5.1", "DISA-SRG-V-233065")


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    name: str
    severity: Severity  # default; a finding may raise or lower it
    summary: str
    controls: tuple[str, ...] = TRUST_CONTROLS


RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        Rule("TD-POL-000", "policy-invalid", "critical", "the policy file does not load"),
        Rule("TD-POL-001", "default-not-reject", "low", "the default scope does not reject"),
        Rule("TD-POL-002", "child-weaker-than-parent", "medium", "a scope weakens its parent"),
        Rule("TD-POL-003", "scope-shadowed", "low", "a scope repeats the scope it shadows"),
        Rule("TD-POL-004", "key-missing", "high", "a required key is not in the keystore"),
        Rule("TD-POL-005", "key-expired", "high", "a required key or its pin has expired"),
        Rule("TD-POL-006", "key-revoked", "high", "a required key is revoked"),
        Rule("TD-POL-007", "key-expiring", "medium", "a required key expires within 30 days"),
        Rule("TD-POL-008", "warn-exception-expired", "medium", "a warn exception has expired"),
        Rule(
            "TD-POL-009", "seccomp-profile-unloadable", "high", "a seccomp profile won't load", ()
        ),
        Rule("TD-POL-010", "threshold-unreachable", "high", "fewer usable keys than threshold"),
        Rule("TD-POL-011", "key-weak", "high", "a required key is too weak to be used"),
        Rule("TD-POL-012", "warn-exception-active", "info", "a scope only warns (exception)"),
        Rule("TD-IMG-001", "image-would-be-denied", "high", "a stored image would not run now"),
        Rule("TD-IMG-002", "image-unverified", "medium", "a stored image was never verified"),
        Rule("TD-IMG-003", "image-allowed-by-exception", "medium", "a stored image runs by warn"),
    )
}


@dataclass(frozen=True, slots=True)
class Finding:
    rule_id: str
    severity: Severity
    subject: str  # the scope key, or the image
    message: str
    fix: str = ""

    @property
    def rule(self) -> Rule:
        return RULES[self.rule_id]

    def to_json(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "rule": self.rule.name,
            "severity": self.severity,
            "subject": self.subject,
            "message": self.message,
            "fix": self.fix,
            "controls": list(self.rule.controls),
        }


def finding(rule_id: str, subject: str, message: str, fix: str = "", severity: str = "") -> Finding:
    rule = RULES[rule_id]
    sev: Severity = next((s for s in SEVERITIES if s == severity), rule.severity)
    return Finding(rule_id, sev, subject, message, fix)


def at_or_above(severity: str, threshold: str) -> bool:
    return SEVERITIES.index(severity) >= SEVERITIES.index(threshold)

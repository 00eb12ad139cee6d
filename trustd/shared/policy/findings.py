"""Audit findings: stable rule IDs, severities and the compliance controls they evidence.

Control IDs name a section of a published benchmark or guide; :data:`CONTROLS` gives each
one's title so a report can show what it means. Frameworks:

- ``CIS-Docker-N``: CIS Docker Benchmark v1.6.0, section N.
- ``CIS-Kubernetes-N``: CIS Kubernetes Benchmark, section N.
- ``NIST-800-190-N``: NIST SP 800-190 (Application Container Security Guide), section N.
- ``DISA-SRG-V-NNNNNN``: DISA Container Platform SRG, by vulnerability ID.

A rule with no control of a framework has none there to cite: TPM measurement (TD-POL-013)
has no CIS Docker or Container Platform SRG item, only NIST SP 800-190 4.6.
"""

from __future__ import annotations

from typing import Any, Literal

from trustd.shared._dataclass import frozen

Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "low", "medium", "high", "critical")

CONTROLS: dict[str, str] = {
    "CIS-Docker-2.5": "CIS Docker 1.6.0 §2.5: Ensure insecure registries are not used",
    "CIS-Docker-4.5": "CIS Docker 1.6.0 §4.5: Ensure Content trust for Docker is Enabled",
    "CIS-Docker-5.2": "CIS Docker 1.6.0 §5.2: Ensure that, if applicable, SELinux security "
    "options are set",
    "CIS-Docker-5.3": "CIS Docker 1.6.0 §5.3: Ensure that Linux kernel capabilities are "
    "restricted within containers",
    "CIS-Docker-5.4": "CIS Docker 1.6.0 §5.4: Ensure that privileged containers are not used",
    "CIS-Docker-5.9": "CIS Docker 1.6.0 §5.9: Ensure that the host's network namespace is "
    "not shared",
    "CIS-Docker-5.15": "CIS Docker 1.6.0 §5.15: Ensure that the host's process namespace is "
    "not shared",
    "CIS-Docker-5.21": "CIS Docker 1.6.0 §5.21: Ensure the default seccomp profile is not Disabled",
    "CIS-Kubernetes-5.5.1": "CIS Kubernetes §5.5.1: Configure Image Provenance using "
    "ImagePolicyWebhook admission controller",
    "NIST-800-190-4.1.5": "NIST SP 800-190 §4.1.5: Use of untrusted images (countermeasure)",
    "NIST-800-190-4.2.1": "NIST SP 800-190 §4.2.1: Insecure connections to registries "
    "(countermeasure)",
    "NIST-800-190-4.4.3": "NIST SP 800-190 §4.4.3: Insecure container runtime configurations "
    "(countermeasure)",
    "NIST-800-190-4.6": "NIST SP 800-190 §4.6: Hardware countermeasures (trusted computing, "
    "measured launch)",
    "DISA-SRG-V-233065": "DISA Container Platform SRG V-233065 (SRG-APP-000131-CTR-000285): "
    "the platform must verify container images",
    "DISA-SRG-V-233015": "DISA Container Platform SRG V-233015 (SRG-APP-000014-CTR-000035): "
    "use TLS 1.2 or greater for container image transport from trusted sources",
    "DISA-SRG-V-233127": "DISA Container Platform SRG V-233127: prohibit containers from "
    "accessing privileged resources (kernel namespaces, sensitive host directories)",
    "DISA-SRG-V-233163": "DISA Container Platform SRG V-233163: container images must execute "
    "using least privileges",
}

# CIS Docker 4.5 (content trust), CIS Kubernetes 5.5.1 (image provenance),
# DISA Container Platform SRG V-233065 (must verify container images),
# NIST SP 800-190 4.1.5 (use of untrusted images).
TRUST_CONTROLS: tuple[str, ...] = (
    "CIS-Docker-4.5",
    "CIS-Kubernetes-5.5.1",
    "DISA-SRG-V-233065",
    "NIST-800-190-4.1.5",
)
_LEAST = ("NIST-800-190-4.4.3", "DISA-SRG-V-233163")  # least privilege at run time
_HOST = ("NIST-800-190-4.4.3", "DISA-SRG-V-233127")  # no access to privileged host resources


@frozen
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
        Rule(
            "TD-POL-013",
            "measurement-not-required",
            "medium",
            "pod starts may go unmeasured (measure off or best-effort)",
            ("NIST-800-190-4.6",),
        ),
        Rule(
            "TD-POL-014",
            "seccomp-unconfined-allowed",
            "high",
            "apps may run with no seccomp filter",
            ("CIS-Docker-5.21", *_LEAST),
        ),
        Rule(
            "TD-POL-015",
            "seccomp-any-allowed",
            "medium",
            "any seccomp filter passes, however permissive",
            ("CIS-Docker-5.21", *_LEAST),
        ),
        Rule(
            "TD-POL-016",
            "dangerous-capability-allowed",
            "high",
            "a capability that breaks container isolation is allowed",
            ("CIS-Docker-5.3", *_LEAST),
        ),
        Rule(
            "TD-POL-017",
            "selinux-off",
            "medium",
            "pods may run without SELinux labels",
            ("CIS-Docker-5.2", *_HOST),
        ),
        Rule(
            "TD-POL-018",
            "fly-flavor-allowed",
            "high",
            "the fly flavor (host namespaces, no isolators) is allowed",
            ("CIS-Docker-5.4", "CIS-Docker-5.9", "CIS-Docker-5.15", *_HOST, "DISA-SRG-V-233163"),
        ),
        Rule(
            "TD-POL-019",
            "insecure-image-allowed",
            "high",
            "--insecure-options=image (no signature check) is allowed",
        ),
        Rule(
            "TD-POL-020",
            "insecure-transport-allowed",
            "medium",
            "--insecure-options=tls, http or pubkey is allowed",
            ("CIS-Docker-2.5", "NIST-800-190-4.2.1", "NIST-800-190-4.1.5", "DISA-SRG-V-233015"),
        ),
        Rule(
            "TD-POL-021",
            "insecure-isolation-allowed",
            "high",
            "--insecure-options=capabilities, paths or seccomp is allowed",
            ("CIS-Docker-5.3", "CIS-Docker-5.4", "CIS-Docker-5.21", *_LEAST, "DISA-SRG-V-233127"),
        ),
        Rule(
            "TD-POL-022",
            "scope-accepts-anything",
            "high",
            "a scope admits unsigned images (accept-anything)",
        ),
        Rule(
            "TD-POL-023",
            "host-network-allowed",
            "high",
            "a scope lets pods share the host's network namespace (--net=host)",
            ("CIS-Docker-5.9",),
        ),
        Rule(
            "TD-POL-024",
            "docker-name-mangled",
            "low",
            "a scope spells a docker registry the way converted store names do (host-port)",
        ),
        Rule(
            "TD-POL-025",
            "signature-rule-weaker-than-parent",
            "medium",
            "a scope's require.formats or require.signed_identity is weaker than its parent's",
            ("CIS-Docker-4.5",),
        ),
        Rule(
            "TD-POL-026",
            "identity-rule-ineffective",
            "medium",
            "a scope's require.signed_identity can never apply as written",
        ),
        Rule(
            "TD-POL-027",
            "docker-names-share-a-store-name",
            "medium",
            "docker:// scopes that differ name images the conversion stores under one AC name",
        ),
        Rule(
            "TD-POL-028",
            "layout-name-without-key",
            "high",
            "a [layouts] entry names a Docker reference no key is trusted for",
        ),
        Rule(
            "TD-POL-029",
            "layout-name-admits-unsigned",
            "medium",
            "a [layouts] entry names a Docker name whose scope admits unsigned images",
        ),
        Rule("TD-IMG-001", "image-would-be-denied", "high", "a stored image would not run now"),
        Rule("TD-IMG-002", "image-unverified", "medium", "a stored image was never verified"),
        Rule("TD-IMG-003", "image-allowed-by-exception", "medium", "a stored image runs by warn"),
    )
}


@frozen
class Finding:
    rule_id: str
    severity: Severity
    subject: str  # the scope key, or the image
    message: str
    fix: str = ""
    key_path: tuple[str, ...] = ()  # where in the policy file (("default", "run", "seccomp"))
    value: str = ""  # the offending value inside that key, when there is one
    line: int | None = None  # 1-based, in the policy file (filled in by lint)
    column: int | None = None

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
            "location": None
            if self.line is None
            else {"key": ".".join(self.key_path), "line": self.line, "column": self.column or 1},
        }


def finding(
    rule_id: str,
    subject: str,
    message: str,
    fix: str = "",
    severity: str = "",
    *,
    key_path: tuple[str, ...] = (),
    value: str = "",
) -> Finding:
    rule = RULES[rule_id]
    sev: Severity = next((s for s in SEVERITIES if s == severity), rule.severity)
    return Finding(rule_id, sev, subject, message, fix, key_path, value)


def at_or_above(severity: str, threshold: str) -> bool:
    return SEVERITIES.index(severity) >= SEVERITIES.index(threshold)

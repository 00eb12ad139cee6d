"""``rkt policy audit``: the policy and every stored image against it, as reports.

Formats: a human table (findings, then each stored image's verdict), JSON (stable keys,
control IDs), SARIF 2.1.0 (CI annotations, with line and column in the policy file), JUnit XML
(one test case per rule and subject) and one self-contained HTML page for auditors
(:mod:`trustd.shared.policy.audit_html`). Images are judged offline on their stored
provenance: the signature requirement of the scope that applies now.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from trustd.shared._dataclass import frozen
from trustd.shared.keystore import Keystore
from trustd.shared.ocisig.name import DockerReference
from trustd.shared.policy.decide import Decision, decide_fetch
from trustd.shared.policy.findings import RULES, SEVERITIES, Finding, finding
from trustd.shared.policy.lint import ScopeKey, lint, scope_keys
from trustd.shared.policy.model import Policy
from trustd.shared.policy.scopes import DEFAULT, ImageRef, parent_of, scope_kind
from trustd.shared.store.model import ImageRecord
from trustd.shared.verify import format_fingerprint

_SARIF_LEVEL = {"info": "note", "low": "note", "medium": "warning", "high": "error"}
_SARIF_LEVEL["critical"] = "error"


@frozen
class AuditReport:
    policy_source: str
    policy_digest: str
    generated_at: datetime
    findings: tuple[Finding, ...]
    images: tuple[Decision, ...]
    scopes: tuple[dict[str, Any], ...] = ()  # each scope's effective rules (scope_rules)

    def worst(self) -> str | None:
        if not self.findings:
            return None
        return max((f.severity for f in self.findings), key=SEVERITIES.index)


def image_ref(record: ImageRecord) -> ImageRef:
    """The stored image as the gates see it: its name and ``version`` label, and for a signed
    docker image the Docker name its signature vouches for (docker:// scopes)."""
    ref = ImageRef.of(record.name, record.label("version"))
    docker = record.provenance.docker_reference
    return replace(ref, docker=DockerReference.parse(docker).name) if docker else ref


def judge_image(policy: Policy, record: ImageRecord, keystore: Keystore, now: datetime) -> Decision:
    prov = record.provenance
    ref = image_ref(record)
    return decide_fetch(
        policy,
        ref,
        prov.signers,
        keystore,
        now,
        insecure_image=prov.insecure,
        image_id=record.key,
        docker_name=ref.docker,
        manifest_digest=prov.source_digest,
    )


def _image_findings(record: ImageRecord, decision: Decision) -> Iterable[Finding]:
    subject = f"{record.name} ({record.key[:19]})"
    if decision.verdict == "deny":
        yield finding("TD-IMG-001", subject, decision.explain(), decision.failed[0].fix)
    elif decision.verdict == "warn":
        yield finding("TD-IMG-003", subject, f"{decision.explain()} ({decision.note})")
    if record.provenance.insecure:
        yield finding(
            "TD-IMG-002",
            subject,
            "imported with --insecure-options=image: its signature was never verified",
            f"rkt image rm {record.key[:19]} and fetch it again with a signature",
        )


def audit(
    policy: Policy, keystore: Keystore, records: Iterable[ImageRecord], now: datetime
) -> AuditReport:
    findings = list(lint(policy, keystore, now))
    decisions: list[Decision] = []
    for record in records:
        decision = judge_image(policy, record, keystore, now)
        decisions.append(decision)
        findings.extend(_image_findings(record, decision))
    return AuditReport(
        policy.source,
        policy.digest,
        now,
        tuple(findings),
        tuple(decisions),
        tuple(scope_rules(policy, keystore, now)),
    )


def _key_state(sk: ScopeKey, now: datetime) -> str:
    if sk.key is None:
        return "missing from the keystore"
    if refusal := sk.key.refusal(now):
        return refusal
    if sk.not_after is not None and sk.not_after <= now:
        return "pin expired"
    return "usable"


def scope_rules(policy: Policy, keystore: Keystore, now: datetime) -> list[dict[str, Any]]:
    """Each scope's effective rules (what it says plus what it takes from [default]), and
    the keys it depends on with their state now."""
    out: list[dict[str, Any]] = []
    for name in (DEFAULT, *policy.scopes):
        scope = policy.scope(name)
        exc = scope.exception
        out.append(
            {
                "scope": name,
                "kind": "default" if name == DEFAULT else scope_kind(name),
                "shadows": "" if name == DEFAULT else parent_of(policy, name),
                "mode": scope.mode,
                "exception": None
                if exc is None
                else {
                    "owner": exc.owner,
                    "expires": exc.expires.isoformat(),
                    "reason": exc.reason,
                    "active": scope.exception_active(now),
                },
                "require": {
                    "type": scope.require.type,
                    "threshold": scope.require.threshold,
                    "keystore": scope.require.keystore,
                    "formats": list(scope.require.formats),
                    "signed_identity": scope.require.signed_identity.to_json(),
                    "keys": [
                        {
                            "fingerprint": format_fingerprint(k.fingerprint),
                            "via": k.via,
                            "state": _key_state(k, now),
                        }
                        for k in scope_keys(policy, name, keystore)
                    ],
                },
                "run": {
                    "flavors": list(scope.run.flavors),
                    "seccomp": list(scope.run.seccomp),
                    "capabilities": list(scope.run.capabilities),
                    "selinux": scope.run.selinux,
                    "private_users": scope.run.private_users,
                    "insecure_options": list(scope.run.insecure_options),
                    "host_namespaces": list(scope.run.host_namespaces),
                    "networks": list(scope.run.networks),
                },
                "measure": scope.measure,
            }
        )
    return out


def to_json(report: AuditReport) -> dict[str, Any]:
    counts = {s: sum(1 for f in report.findings if f.severity == s) for s in SEVERITIES}
    return {
        "schema": "trustd.shared.policy.audit/v1",
        "policy": {"source": report.policy_source, "digest": report.policy_digest},
        "generated_at": report.generated_at.isoformat(),
        "summary": {"findings": len(report.findings), "by_severity": counts},
        "findings": [f.to_json() for f in report.findings],
        "images": [d.to_json() for d in report.images],
        "scopes": list(report.scopes),
    }


def _uri(source: str) -> str:
    return Path(source).as_uri() if source.startswith("/") else (source or "policy.toml")


def _location(f: Finding, uri: str) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": {"uri": uri}}
    if f.line is not None:
        physical["region"] = {"startLine": f.line, "startColumn": f.column or 1}
    return {"physicalLocation": physical, "logicalLocations": [{"name": f.subject}]}


def to_sarif(report: AuditReport) -> dict[str, Any]:
    used = sorted({f.rule_id for f in report.findings} | set(RULES))
    rules = [
        {
            "id": rid,
            "name": RULES[rid].name,
            "shortDescription": {"text": RULES[rid].summary},
            "defaultConfiguration": {"level": _SARIF_LEVEL[RULES[rid].severity]},
            "properties": {"controls": list(RULES[rid].controls), "severity": RULES[rid].severity},
        }
        for rid in used
    ]
    uri = _uri(report.policy_source)
    results = [
        {
            "ruleId": f.rule_id,
            "ruleIndex": used.index(f.rule_id),
            "level": _SARIF_LEVEL[f.severity],
            "message": {"text": f"{f.message}" + (f" Fix: {f.fix}" if f.fix else "")},
            "locations": [_location(f, uri)],
            "properties": {"severity": f.severity, "controls": list(f.rule.controls)},
        }
        for f in report.findings
    ]
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "trustd-policy", "rules": rules}},
                "results": results,
            }
        ],
    }


def to_junit(report: AuditReport) -> str:
    suite = ET.Element(
        "testsuite",
        name="trustd policy audit",
        tests=str(len(RULES)),
        failures=str(len(report.findings)),
        timestamp=report.generated_at.isoformat(),
    )
    for rid, rule in RULES.items():
        hits = [f for f in report.findings if f.rule_id == rid]
        case = ET.SubElement(suite, "testcase", classname=rid, name=rule.name)
        for f in hits:
            fail = ET.SubElement(
                case, "failure", message=f"{f.subject}: {f.message}", type=f.severity
            )
            fail.text = f.fix
    ET.indent(suite)
    return str(ET.tostring(suite, encoding="unicode"))


def to_table_rows(report: AuditReport) -> list[list[str]]:
    return [
        [f.severity.upper(), f.rule_id, f.subject, str(f.line or ""), f.message]
        for f in report.findings
    ]


TABLE_HEADER = ["SEVERITY", "RULE", "SUBJECT", "LINE", "MESSAGE"]
IMAGE_HEADER = ["IMAGE", "ID", "SCOPE", "VERDICT", "WHY"]


def image_rows(report: AuditReport) -> list[list[str]]:
    """One row per stored image: its verdict now and the first reason."""
    return [[d.image, d.image_id[:19], d.scope, d.verdict.upper(), why(d)] for d in report.images]


def why(d: Decision) -> str:
    if not d.failed:
        return "all requirements met" + (f" ({d.note})" if d.note else "")
    first = d.failed[0]
    return f"{first.requirement}: {first.reason}" + (f" ({d.note})" if d.note else "")


def render(report: AuditReport, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(to_json(report), indent=2)
    if fmt == "sarif":
        return json.dumps(to_sarif(report), indent=2)
    if fmt == "junit":
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + to_junit(report)
    if fmt == "html":
        from trustd.shared.policy.audit_html import to_html  # noqa: PLC0415 - one format

        return to_html(report)
    raise ValueError(fmt)

"""``rkt policy audit --format=html``: one self-contained page an auditor can read.

The page holds the findings (severity, rule, where in the policy file, the fix and the
controls each one evidences), each stored image's verdict, each scope's effective rules with
the keys it depends on, and the titles of every control cited. It has inline CSS only: no
script, no external resource (a Content-Security-Policy of ``default-src 'none'`` says so to
the browser too). Every string from the policy, the store or the keystore is escaped with
:func:`html.escape`, so a name or an owner holding markup is shown, never run.
"""

from __future__ import annotations

import html
from collections import Counter
from typing import Any

from trustd.shared.policy.audit import AuditReport, why
from trustd.shared.policy.findings import CONTROLS, RULES, SEVERITIES

_CSS = """
:root { color-scheme: light; --ink: #1d232a; --muted: #5b6570; --line: #d6dbe0; }
* { box-sizing: border-box; }
body { font: 14px/1.45 "Liberation Sans", "DejaVu Sans", Arial, sans-serif; color: var(--ink);
  margin: 0; background: #f5f6f8; }
header { background: #1f2d3d; color: #fff; padding: 20px 32px; }
header h1 { margin: 0 0 6px; font-size: 22px; }
header p { margin: 2px 0; color: #c9d3dd; }
code, .mono { font-family: "Liberation Mono", "DejaVu Sans Mono", monospace; font-size: 12.5px; }
main { padding: 8px 32px 32px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px;
  margin: 18px 0; padding: 14px 18px; }
h2 { font-size: 17px; margin: 0 0 10px; }
h3 { font-size: 15px; margin: 14px 0 6px; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; }
th, td { text-align: left; vertical-align: top; padding: 6px 8px;
  border-bottom: 1px solid var(--line); overflow-wrap: anywhere; }
th { background: #eef1f4; font-weight: 600; white-space: nowrap; }
td.fix { color: var(--muted); }
.badges { display: flex; gap: 8px; flex-wrap: wrap; margin-top: 10px; }
.badge { display: inline-block; border-radius: 4px; padding: 1px 8px; font-weight: 600;
  font-size: 12px; white-space: nowrap; }
.sev-critical { background: #5c0f14; color: #fff; }
.sev-high { background: #c62828; color: #fff; }
.sev-medium { background: #ef8f00; color: #1d232a; }
.sev-low { background: #fdd835; color: #1d232a; }
.sev-info { background: #90a4ae; color: #fff; }
.v-allow { background: #2e7d32; color: #fff; }
.v-warn { background: #ef8f00; color: #1d232a; }
.v-deny { background: #c62828; color: #fff; }
.ctl { display: inline-block; margin: 0 3px 3px 0; padding: 0 4px; border: 1px solid var(--line);
  border-radius: 3px; background: #f7f9fb; font-size: 11px; overflow-wrap: normal; }
td.where, td.rule { font-size: 12px; }
dl.rules { display: grid; grid-template-columns: 170px 1fr; gap: 3px 12px; margin: 0; }
dl.rules dt { color: var(--muted); }
dl.rules dd { margin: 0; }
.scope { border-top: 1px solid var(--line); padding-top: 6px; }
.scope:first-of-type { border-top: 0; }
.none { color: var(--muted); font-style: italic; }
footer { color: var(--muted); padding: 0 32px 24px; font-size: 12px; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _badge(kind: str, text: str) -> str:
    return f'<span class="badge {_e(kind)}">{_e(text)}</span>'


def _controls(ids: tuple[str, ...] | list[str]) -> str:
    return "".join(
        f'<span class="ctl mono" title="{_e(CONTROLS.get(c, c))}">{_e(c)}</span>' for c in ids
    )


def _findings(report: AuditReport) -> str:
    rows = []
    for f in report.findings:
        where = "" if f.line is None else f"line {f.line}, col {f.column or 1}"
        key = ".".join(f.key_path)
        rows.append(
            f'<tr class="finding" data-rule="{_e(f.rule_id)}">'
            f"<td>{_badge('sev-' + f.severity, f.severity.upper())}</td>"
            f'<td class="mono rule">{_e(f.rule_id)}<br>{_e(f.rule.name)}</td>'
            f"<td>{_e(f.subject)}</td>"
            f'<td class="mono where">{_e(where)}<br>{_e(key)}</td>'
            f"<td>{_e(f.message)}</td>"
            f'<td class="fix">{_e(f.fix)}</td>'
            f"<td>{_controls(f.rule.controls)}</td></tr>"
        )
    if not rows:
        rows.append('<tr><td colspan="7" class="none">No findings.</td></tr>')
    cols = (
        ("Severity", 86),
        ("Rule", 150),
        ("Subject", 120),
        ("Where", 150),
        ("Finding", 0),
        ("Fix", 0),
        ("Controls", 150),
    )
    widths = "".join(f'<col style="width:{w}px">' if w else "<col>" for _, w in cols)
    head = "".join(f"<th>{h}</th>" for h, _ in cols)
    return (
        f'<section id="findings"><h2>Findings ({len(report.findings)})</h2>'
        f'<table id="findings-table"><colgroup>{widths}</colgroup>'
        f"<thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _images(report: AuditReport) -> str:
    rows = [
        f'<tr class="image"><td>{_e(d.image)}</td>'
        f'<td class="mono" title="{_e(d.image_id)}">{_e(d.image_id[:23])}</td>'
        f"<td>{_e(d.scope)}</td><td>{_badge('v-' + d.verdict, d.verdict.upper())}</td>"
        f"<td>{_e(why(d))}</td></tr>"
        for d in report.images
    ]
    if not rows:
        rows.append('<tr><td colspan="5" class="none">No stored images.</td></tr>')
    head = "".join(f"<th>{h}</th>" for h in ("Image", "ID", "Scope", "Verdict", "Why"))
    widths = "".join(f'<col style="width:{w}">' for w in ("22%", "18%", "14%", "90px", "auto"))
    return (
        f'<section id="images"><h2>Stored images ({len(report.images)})</h2>'
        f'<table id="images-table"><colgroup>{widths}</colgroup><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _list(values: list[str]) -> str:
    if not values:
        return '<span class="none">(none)</span>'
    return ", ".join(f"<code>{_e(v)}</code>" for v in values)


def _identity(rule: dict[str, str] | None) -> str:
    if not rule:
        return '<span class="none">(none)</span>'
    extra = ", ".join(f"{_e(k)} <code>{_e(v)}</code>" for k, v in rule.items() if k != "type")
    return f"<code>{_e(rule['type'])}</code>" + (f" ({extra})" if extra else "")


def _scope(doc: dict[str, Any]) -> str:
    req, run, exc = doc["require"], doc["run"], doc["exception"]
    keys = (
        "<br>".join(
            f"<code>{_e(k['fingerprint'])}</code> {_e(k['via'])}: {_e(k['state'])}"
            for k in req["keys"]
        )
        or '<span class="none">(none)</span>'
    )
    if not req["keys"] and req["type"] == "signed" and doc["kind"] in ("default", "wildcard"):
        keys = '<span class="none">(no root keys: prefix keyrings vouch for their names)</span>'
    rows = [
        ("kind", _e(doc["kind"]) + (f" (shadows {_e(doc['shadows'])})" if doc["shadows"] else "")),
        ("mode", _e(doc["mode"])),
        (
            "exception",
            '<span class="none">(none)</span>'
            if exc is None
            else f"owner {_e(exc['owner'])}, expires {_e(exc['expires'])}"
            + (" (active)" if exc["active"] else " (expired: enforcing)")
            + (f": {_e(exc['reason'])}" if exc["reason"] else ""),
        ),
        (
            "require",
            f"{_e(req['type'])}, threshold {_e(req['threshold'])}, "
            f"keystore {'true' if req['keystore'] else 'false'}",
        ),
        ("require.formats", _list(req.get("formats", []))),
        ("require.signed_identity", _identity(req.get("signed_identity"))),
        ("keys", keys),
        ("run.flavors", _list(run["flavors"])),
        ("run.seccomp", _list(run["seccomp"])),
        ("run.capabilities", _list(run["capabilities"])),
        ("run.selinux", _e(run["selinux"])),
        ("run.private_users", _e(run["private_users"])),
        ("run.insecure_options", _list(run["insecure_options"])),
        ("run.host_namespaces", _list(run.get("host_namespaces", []))),
        ("run.networks", _list(run.get("networks", []))),
        ("measure", _e(doc["measure"])),
    ]
    body = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows)
    return (
        f'<div class="scope"><h3 class="mono">{_e(doc["scope"])}</h3>'
        f'<dl class="rules">{body}</dl></div>'
    )


def _scopes(report: AuditReport) -> str:
    inner = "".join(_scope(d) for d in report.scopes) or '<p class="none">(not recorded)</p>'
    return (
        '<section id="scopes"><h2>Effective rules per scope</h2>'
        "<p>What each scope says, with the keys it leaves out taken from "
        "<code>[default]</code>; the most specific scope applies alone.</p>"
        f"{inner}</section>"
    )


def _control_titles(report: AuditReport) -> str:
    used = sorted({c for f in report.findings for c in f.rule.controls})
    if not used:
        used = sorted({c for r in RULES.values() for c in r.controls})
    rows = "".join(
        f'<tr><td class="mono">{_e(c)}</td><td>{_e(CONTROLS.get(c, ""))}</td></tr>' for c in used
    )
    return (
        '<section id="controls"><h2>Controls cited</h2>'
        '<table><colgroup><col style="width:200px"><col></colgroup>'
        "<thead><tr><th>Control</th><th>Title</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def to_html(report: AuditReport) -> str:
    counts = Counter(f.severity for f in report.findings)
    verdicts = Counter(d.verdict for d in report.images)
    badges = "".join(
        _badge(f"sev-{s}", f"{counts[s]} {s}") for s in reversed(SEVERITIES) if counts[s]
    ) or _badge("v-allow", "no findings")
    badges += "".join(
        _badge(f"v-{v}", f"{verdicts[v]} image(s) {v}")
        for v in ("deny", "warn", "allow")
        if verdicts[v]
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>trustd policy audit: {_e(report.policy_source)}</title>"
        f"<style>{_CSS}</style></head><body>"
        "<header><h1>trustd policy audit</h1>"
        f"<p>policy <code>{_e(report.policy_source)}</code></p>"
        f"<p>digest <code>{_e(report.policy_digest)}</code></p>"
        f"<p>generated {_e(report.generated_at.isoformat(timespec='seconds'))}, "
        f"{len(report.findings)} finding(s), {len(report.images)} stored image(s)</p>"
        f'<div class="badges">{badges}</div></header><main>'
        f"{_findings(report)}{_images(report)}{_scopes(report)}{_control_titles(report)}"
        "</main><footer>Written by <code>rkt policy audit --format=html</code>: no scripts, "
        "no external resources. The JSON form (<code>--format=json</code>) carries the same "
        "findings for machines.</footer></body></html>\n"
    )

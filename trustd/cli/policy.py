"""``rkt policy check | explain | audit | schema | log verify``: the policy, offline, for people
and CI."""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trustd.cli._common import add_format_flag, is_json, json_text, print_json, print_table, word
from trustd.shared.config import GlobalOptions
from trustd.shared.errors import UserError
from trustd.shared.keystore import Keystore
from trustd.shared.policy import ImageRef, Policy, load_effective, load_policy
from trustd.shared.policy.audit import (
    IMAGE_HEADER,
    TABLE_HEADER,
    audit,
    image_rows,
    render,
    to_table_rows,
)
from trustd.shared.policy.explain import explain
from trustd.shared.policy.findings import SEVERITIES, Finding, at_or_above
from trustd.shared.policy.lint import lint
from trustd.shared.policy.log import DecisionLogError, log_path, root_log_path
from trustd.shared.policy.log_verify import LogCheck, check_log
from trustd.shared.policy.schema import policy_schema

EXIT_FINDINGS = 1  # findings at or above --fail-on (errors of our own exit 254)
_FAIL_CHOICES = (*SEVERITIES, "never")


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    check = sub.add_parser(
        "policy-check", parents=parents, prog="rkt policy check", help="validate and lint a policy"
    )
    check.add_argument("file", nargs="?", type=Path, help="default: the policy in force")
    add_format_flag(check)
    _add_fail_on(check)
    check.set_defaults(func=run_check)
    exp = sub.add_parser(
        "policy-explain",
        parents=parents,
        prog="rkt policy explain",
        help="what the policy says for an image name or a stored image, and why",
    )
    exp.add_argument(
        "image",
        help="NAME[:VERSION], docker://REGISTRY/REPO[:TAG], oci:DIR[:TAG] or a store image ID "
        "(sha512-...)",
    )
    exp.add_argument("--stored", action="store_true", help="judge the newest stored NAME")
    add_format_flag(exp)
    exp.set_defaults(func=run_explain)
    aud = sub.add_parser(
        "policy-audit",
        parents=parents,
        prog="rkt policy audit",
        help="the policy and every stored image against it",
    )
    add_format_flag(aud, "sarif", "junit", "html")
    _add_fail_on(aud)
    aud.set_defaults(func=run_audit)
    sch = sub.add_parser(
        "policy-schema",
        parents=parents,
        prog="rkt policy schema",
        help="print the JSON Schema of policy.toml",
    )
    sch.set_defaults(func=run_schema)
    log = sub.add_parser(
        "policy-log",
        parents=parents,
        prog="rkt policy log",
        help="verify the hash-chained decision logs",
    )
    log.add_argument(
        "action", choices=("verify",), help="verify: check the decision log's hash chain"
    )
    add_format_flag(log)
    log.set_defaults(func=run_log)


def _add_fail_on(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fail-on",
        choices=_FAIL_CHOICES,
        default="high",
        help="exit non-zero from findings of this severity up (default high)",
    )


def _keystore(options: GlobalOptions) -> Keystore:
    return Keystore(options.dirs.system_config, options.dirs.local_config)


def _policy(options: GlobalOptions) -> Policy:
    return load_effective(options.dirs.system_config, options.dirs.local_config)


def _exit(findings: list[Finding] | tuple[Finding, ...], fail_on: str) -> int:
    if fail_on == "never":
        return 0
    return EXIT_FINDINGS if any(at_or_above(f.severity, fail_on) for f in findings) else 0


def _print_findings(findings: list[Finding]) -> None:
    rows = [
        [
            f.severity.upper(),
            f.rule_id,
            f.subject,
            f"{f.line}:{f.column or 1}" if f.line else "",
            f.message + (f" (fix: {f.fix})" if f.fix else ""),
        ]
        for f in findings
    ]
    print_table(rows, ["SEVERITY", "RULE", "SUBJECT", "LINE", "MESSAGE"] if rows else None)


def run_check(args: argparse.Namespace) -> int:
    options: GlobalOptions = args.options
    policy = load_policy(args.file) if args.file else _policy(options)
    findings = lint(policy, _keystore(options), datetime.now(UTC))
    if is_json(args.format):
        doc = {
            "policy": {"source": policy.source, "digest": policy.digest},
            "findings": [f.to_json() for f in findings],
        }
        print_json(doc, args.format)
    else:
        print(f"policy {policy.source}: loads ({policy.digest}), {len(findings)} finding(s)")
        _print_findings(findings)
    return _exit(findings, args.fail_on)


def _explain_text(doc: dict[str, Any]) -> None:
    print(f"image:    {doc['image']}")
    if doc.get("docker_name"):
        print(f"docker:   {doc['docker_name']}")
    if "layout" in doc:
        stated = doc["layout"]
        print(
            f"layout:   {stated['key']} is verified as {stated['docker_reference']}"
            if stated
            else "layout:   not in [layouts]: only an unsigned import "
            "(--insecure-options=image), under its directory's name"
        )
    print(f"policy:   {doc['policy']['source']} ({doc['policy']['digest']})")
    print(f"scope:    {doc['scope']}  (mode {doc['mode']})")
    print(f"shadows:  {', '.join(doc['shadows']) or '(none)'}")
    if doc["exception"]:
        e = doc["exception"]
        state = "active" if e["active"] else "EXPIRED: enforcing"
        print(f"exception: owner {e['owner']}, expires {e['expires']} ({state})")
    req = doc["require"]
    keystore = word(req["keystore"])
    print(f"require:  {req['type']}, threshold {req['threshold']}, keystore keys: {keystore}")
    print(f"require.formats: {', '.join(req['formats'])}")
    rule = req["signed_identity"]
    extra = ", ".join(f"{k} {v}" for k, v in rule.items() if k != "type")
    print(f"require.signed_identity: {rule['type']}" + (f" ({extra})" if extra else ""))
    for k in req["keys"]:
        print(f"  key {k['fingerprint']}  {k['via']}: {k['state']}")
    run = doc["run"]
    for name in ("flavors", "capabilities", "insecure_options"):
        print(f"run.{name}: {', '.join(run[name]) or '(none)'}")
    for entry, digest in doc["seccomp_digests"].items():
        print(f"run.seccomp: {entry} {digest}")
    print(f"run.selinux: {run['selinux']}")
    print(f"run.private_users: {run['private_users']}")
    print(f"measure:  {doc['measure']}")
    if "stored" in doc:
        s = doc["stored"]
        print(f"stored:   {s['id']} signers: {', '.join(s['signers']) or '(none)'}")
        print(f"verdict:  {s['verdict']}: {s['why']}")


def run_explain(args: argparse.Namespace) -> int:
    options: GlobalOptions = args.options
    policy = _policy(options)
    record = None
    layout: dict[str, str] | None = None
    if args.image.startswith("sha512-") or args.stored:
        from trustd.cli._store import records  # noqa: PLC0415 - only when the store is asked

        (record,) = records(options, args.image)
        from trustd.shared.policy.audit import image_ref  # noqa: PLC0415

        ref = image_ref(record)  # as the gates see it (and its docker name, when signed)
    elif args.image.startswith("docker://"):  # as typed: judged by the name it will get
        from trustd.unprivileged.docker import parse_docker_ref, policy_ref  # noqa: PLC0415

        ref = policy_ref(parse_docker_ref(args.image))
    elif args.image.startswith("oci:"):
        ref, layout = _layout_ref(policy, args.image)
    else:
        ref = ImageRef.parse(args.image)
    doc = explain(policy, ref, _keystore(options), datetime.now(UTC), record)
    if args.image.startswith("oci:"):
        doc["layout"] = layout
    if is_json(args.format):
        print_json(doc, args.format)
    else:
        _explain_text(doc)
    return 0


def _layout_ref(policy: Policy, text: str) -> tuple[ImageRef, dict[str, str] | None]:
    """An ``oci:`` layout as the gates will judge it: the Docker reference ``[layouts]``
    states for it (docs/adr/0028), else the directory name an unsigned import gets."""
    from trustd.shared.docker.convert import sanitize_identifier  # noqa: PLC0415
    from trustd.shared.policy.layouts import layout_identity  # noqa: PLC0415
    from trustd.unprivileged.docker import parse_docker_ref, policy_ref  # noqa: PLC0415

    local = parse_docker_ref(text)
    path = os.path.abspath(local.path or ".")  # noqa: PTH100 - as fetch spells the key
    stated = layout_identity(policy.layouts, path, local.tag)
    if stated is None:
        name = sanitize_identifier(os.path.basename(path)) or "oci-image"  # noqa: PTH119
        return ImageRef.of(name, local.tag or "latest"), None
    key, target = stated
    ref = policy_ref(parse_docker_ref(f"docker://{target}"))
    return ref, {"key": key, "docker_reference": f"docker://{target}"}


def run_audit(args: argparse.Namespace) -> int:
    options: GlobalOptions = args.options
    policy = _policy(options)
    records = []
    try:
        from trustd.cli._store import records as stored  # noqa: PLC0415

        records = stored(options)
    except UserError:
        records = []  # no store yet: the policy alone is audited
    report = audit(policy, _keystore(options), records, datetime.now(UTC))
    if args.format == "table":
        print(f"policy {report.policy_source} ({report.policy_digest})")
        print(f"{len(report.images)} stored image(s), {len(report.findings)} finding(s)")
        print_table(to_table_rows(report), TABLE_HEADER)
        if report.images:
            print()
            print_table(image_rows(report), IMAGE_HEADER)
    elif is_json(args.format):
        print(json_text(json.loads(render(report, "json")), args.format))
    else:
        print(render(report, args.format))
    return _exit(report.findings, args.fail_on)


def run_schema(args: argparse.Namespace) -> int:
    del args
    print(json.dumps(policy_schema(), indent=2))
    return 0


def _log_checks(options: GlobalOptions) -> list[LogCheck]:
    data = options.dirs.data
    checks = [check_log(log_path(data), "fetch log (group rkt)")]
    root_log = root_log_path(data)
    if os.geteuid() == 0:
        checks.append(check_log(root_log, "run log (root)"))
    else:
        checks.append(
            LogCheck(
                "run log (root)",
                root_log,
                "skipped",
                problem="root's log is readable by root only; run this as root to check it",
            )
        )
    return checks


def run_log(args: argparse.Namespace) -> int:
    checks = _log_checks(args.options)
    if is_json(args.format):
        doc = [
            {
                "log": c.label,
                "path": str(c.path),
                "state": c.state,
                "lines": c.lines,
                "head": c.head,
                "broken_line": c.broken_line,
                "problem": c.problem,
            }
            for c in checks
        ]
        print_json(doc, args.format)
    else:
        for c in checks:
            print(c.describe())
    broken = next((c for c in checks if c.state in ("broken", "unreadable")), None)
    if broken is not None:
        where = f"{broken.path}:{broken.broken_line}" if broken.broken_line else str(broken.path)
        raise DecisionLogError(
            f"decision log {where}: {broken.problem}",
            hint="a line was rewritten, inserted or removed: keep the file for investigation"
            if broken.state == "broken"
            else "check the data directory (--dir) and its permissions",
        )
    return 0

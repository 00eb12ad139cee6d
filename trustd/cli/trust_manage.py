"""``rkt trust list`` and ``rkt trust remove``: what rkt left to manual file operations."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from trustd.cli._common import add_format_flag, is_json, print_json, print_table
from trustd.cli.trust import parse_prefix
from trustd.shared.config import GlobalOptions
from trustd.shared.errors import UserError
from trustd.shared.keystore import KeyFile, Keystore
from trustd.shared.ocisig.name import DockerName
from trustd.shared.verify import format_fingerprint


def _state(entry: KeyFile, masked: set[tuple[str, str]], now: datetime) -> str:
    if entry.pem is not None and not entry.problem:
        hidden = entry.level == "system" and (entry.scope_text, entry.fingerprint) in masked
        return "masked" if hidden else "trusted"
    if entry.problem or entry.key is None:
        return "broken"
    key = entry.key
    checks = (
        (entry.level == "system" and (entry.scope_text, entry.fingerprint) in masked, "masked"),
        (key.revoked, "revoked"),
        (key.weak_reason is not None, "weak"),
        (key.expired(now), "expired"),
    )
    return next((state for hit, state in checks if hit), "trusted")


def _record(entry: KeyFile, state: str) -> dict[str, Any]:
    key = entry.key
    return {
        "scope": "root"
        if entry.scope is None
        else "docker-prefix"
        if isinstance(entry.scope, DockerName)
        else "prefix",
        "prefix": None if entry.scope is None else str(entry.scope),
        "fingerprint": entry.fingerprint if entry.pem else format_fingerprint(entry.fingerprint),
        "key_type": entry.pem.algorithm if entry.pem else "openpgp",
        "level": entry.level,
        "state": state,
        "masked": state == "masked",
        "revoked": bool(key and key.revoked),
        "expires": key.expires.isoformat() if key and key.expires else None,
        "user_ids": list(key.user_ids) if key else ([entry.pem.algorithm] if entry.pem else []),
        "path": str(entry.path),
        "problem": entry.problem or (key.weak_reason if key else None),
    }


def _records(keystore: Keystore) -> list[dict[str, Any]]:
    entries = list(keystore.entries())
    masked = {(e.scope_text, e.fingerprint) for e in entries if e.mask and e.level == "local"}
    now = datetime.now(UTC)
    return [_record(e, _state(e, masked, now)) for e in entries if not e.mask]


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    ls = sub.add_parser(
        "trust-list",
        parents=parents,
        prog="rkt trust list",
        help="list trusted keys (rkt trust list)",
    )
    add_format_flag(ls)
    ls.add_argument("--no-legend", action="store_true", help="suppress a legend with the list")
    ls.set_defaults(func=run_list)
    rm = sub.add_parser(
        "trust-remove",
        parents=parents,
        prog="rkt trust remove",
        help="stop trusting a key (rkt trust remove)",
    )
    rm.add_argument("--prefix", default="", help="the prefix the key is trusted for")
    rm.add_argument("--root", action="store_true", help="remove a key trusted for all images")
    rm.add_argument("fingerprint", help="the key's fingerprint (as rkt trust list shows it)")
    rm.set_defaults(func=run_remove)


def run_list(args: argparse.Namespace) -> int:
    options: GlobalOptions = args.options
    records = _records(Keystore(options.dirs.system_config, options.dirs.local_config))
    if is_json(args.format):
        print_json(records, args.format)
        return 0
    rows = [
        [
            r["prefix"] or "(root)",
            r["level"],
            r["fingerprint"],
            r["state"],
            (r["expires"] or "never")[:10],
            ", ".join(r["user_ids"]) or (r["problem"] or ""),
        ]
        for r in records
    ]
    legend = ["PREFIX", "LEVEL", "FINGERPRINT", "STATE", "EXPIRES", "USER ID"]
    print_table(rows, None if args.no_legend else legend)
    return 0


def run_remove(args: argparse.Namespace) -> int:
    options: GlobalOptions = args.options
    if args.root == bool(args.prefix):
        raise UserError(
            "exactly one of --prefix or --root is required",
            hint="rkt trust remove --prefix example.com/app FINGERPRINT",
        )
    scope = None if args.root else parse_prefix(args.prefix)
    keystore = Keystore(options.dirs.system_config, options.dirs.local_config)
    result = keystore.remove(args.fingerprint, scope)
    where = "root key" if scope is None else f'key for prefix "{scope}"'
    if result.masked_system_key:
        print(f'Masked system {where} with "{result.path}"')
    else:
        print(f'Removed {where} at "{result.path}"')
    return 0

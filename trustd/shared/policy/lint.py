"""``rkt policy check``: lint a loaded policy against itself and the keystore.

The rules live by subject: keys (:mod:`._lint_keys`), scopes against their parents
(:mod:`._lint_scopes`), what runs (:mod:`._lint_run`); this module collects, orders and
locates the findings.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from trustd.shared.keystore import Keystore
from trustd.shared.policy._codec import find_location
from trustd.shared.policy._lint_keys import (
    EXPIRY_WARNING,
    ScopeKey,
    default_rule,
    keys,
    scope_keys,
)
from trustd.shared.policy._lint_layouts import layouts
from trustd.shared.policy._lint_run import DANGEROUS_CAPS, runtime, seccomp
from trustd.shared.policy._lint_scopes import exceptions, hierarchy, signature_rules
from trustd.shared.policy.findings import Finding
from trustd.shared.policy.model import Policy

__all__ = ["DANGEROUS_CAPS", "EXPIRY_WARNING", "ScopeKey", "lint", "scope_keys"]


def _locate(policy: Policy, found: Finding) -> Finding:
    if not policy.text or not found.key_path:
        return found
    where = find_location(policy.text, found.key_path, found.value)
    if where is None:
        return found
    return replace(found, line=where[0], column=where[1])


def lint(policy: Policy, keystore: Keystore, now: datetime) -> list[Finding]:
    """Every finding about the policy itself, most severe first, located in the file."""
    found = [
        *default_rule(policy, keystore),
        *hierarchy(policy, now),
        *keys(policy, keystore, now),
        *exceptions(policy, now),
        *seccomp(policy),
        *runtime(policy),
        *signature_rules(policy),
        *layouts(policy, keystore),
    ]
    order = ("critical", "high", "medium", "low", "info")
    found.sort(key=lambda f: (order.index(f.severity), f.rule_id, f.subject))
    return [_locate(policy, f) for f in found]

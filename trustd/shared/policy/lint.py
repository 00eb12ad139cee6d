"""``rkt policy check``: lint a loaded policy against itself and the keystore."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from trustd.shared.appc.identifier import ACIdentifier
from trustd.shared.keystore import Keystore
from trustd.shared.policy import _profiles
from trustd.shared.policy._signers import keystore_key
from trustd.shared.policy.findings import Finding, finding
from trustd.shared.policy.model import SECCOMP_BUILTINS, SECCOMP_DIGEST, Policy, Scope
from trustd.shared.policy.scopes import DEFAULT, parent_of, scope_kind
from trustd.shared.verify import PublicKey, format_fingerprint
from trustd.shared.vocab import MEASURE_RANK, SELINUX_RANK

EXPIRY_WARNING = timedelta(days=30)
_REQ = {"accept-anything": 0, "signed": 1, "reject": 2}


@dataclass(frozen=True, slots=True)
class ScopeKey:
    """A key a scope depends on, with where it comes from (None: not in the keystore)."""

    fingerprint: str
    key: PublicKey | None
    via: str
    not_after: datetime | None = None


def scope_keys(policy: Policy, name: str, keystore: Keystore) -> list[ScopeKey]:
    scope = policy.scope(name)
    out: list[ScopeKey] = []
    if scope.require.type != "signed":
        return out
    if scope.require.keystore:
        if name == DEFAULT or scope_kind(name) == "wildcard":
            files = keystore.scope_files(None)
            masked = {f.fingerprint for f in files if f.mask and f.level == "local"}
            out += [
                ScopeKey(f.fingerprint, f.key, "keystore root")
                for f in files
                if f.key and not (f.level == "system" and f.fingerprint in masked)
            ]
        else:
            ring = keystore.keyring_for(ACIdentifier(name.partition(":")[0]))
            out += [
                ScopeKey(t.key.fingerprint, t.key, f"keystore {t.scope_text}") for t in ring.keys
            ]
    for pin in scope.require.fingerprints:
        key = keystore_key(keystore, pin.fingerprint)
        out.append(ScopeKey(pin.fingerprint, key, "pinned", pin.not_after))
    return out


def _default_rule(policy: Policy) -> Iterator[Finding]:
    req = policy.default.require
    if req.type == "reject":
        return
    sev = "high" if req.type == "accept-anything" else "low"
    yield finding(
        "TD-POL-001",
        DEFAULT,
        f"the default scope is {req.type!r}, not 'reject': images no scope names are "
        + ("accepted unsigned" if sev == "high" else "accepted when any root or prefix key signed"),
        'set [default.require] type = "reject" and list trusted registries as scopes',
        sev,
    )


def _weaker(child: Scope, parent: Scope, now: datetime) -> tuple[list[str], bool]:
    out: list[str] = []
    c, p = child.require, parent.require
    # under a rejecting parent, children are the allow-list (the recommended layout)
    trust = p.type != "reject" and _REQ[c.type] < _REQ[p.type]
    if c.type == p.type == "signed":
        if c.threshold < p.threshold:
            out.append(f"threshold {c.threshold} < {p.threshold}")
            trust = True
        if c.keystore and not p.keystore:
            out.append("trusts every keystore key, the parent only pinned keys")
            trust = True
    elif trust:
        out.append(f"require {c.type} where the parent has {p.type}")
    cr, pr = child.run, parent.run
    for label, mine, theirs in (
        ("flavors", cr.flavors, pr.flavors),
        ("capabilities", cr.capabilities, pr.capabilities),
        ("insecure_options", cr.insecure_options, pr.insecure_options),
    ):
        extra = sorted(set(mine) - set(theirs))
        if extra:
            out.append(f"{label} adds {', '.join(extra)}")
    loose = sorted({"any", "unconfined"} & (set(cr.seccomp) - set(pr.seccomp)))
    if loose:
        out.append(f"seccomp allows {', '.join(loose)}")
    if SELINUX_RANK[cr.selinux] < SELINUX_RANK[pr.selinux]:
        out.append(f"selinux {cr.selinux} < {pr.selinux}")
    if MEASURE_RANK[child.measure] < MEASURE_RANK[parent.measure]:
        out.append(f"measure {child.measure} < {parent.measure}")
    if child.exception_active(now) and not parent.exception_active(now):
        out.append("only warns where the parent enforces")
    return out, trust


def _hierarchy(policy: Policy, now: datetime) -> Iterator[Finding]:
    for name, scope in policy.scopes.items():
        parent_name = parent_of(policy, name)
        parent = policy.scope(parent_name)
        if scope == parent:
            yield finding(
                "TD-POL-003",
                name,
                f"scope {name!r} repeats {parent_name!r}, which it shadows for its names: "
                f"later changes to {parent_name!r} will silently not apply to them",
                f"remove [scopes.{name!r}] or make it differ on purpose",
            )
            continue
        weaker, trust = _weaker(scope, parent, now)
        if weaker:
            yield finding(
                "TD-POL-002",
                name,
                f"scope {name!r} is weaker than {parent_name!r}, which it shadows: "
                + "; ".join(weaker),
                f"restate the stricter settings of {parent_name!r} in {name!r} "
                "(scopes inherit from [default] only)",
                "high" if trust else "medium",
            )


def _key_findings(name: str, sk: ScopeKey, now: datetime) -> Iterator[Finding]:
    shown = format_fingerprint(sk.fingerprint)
    fix = f"rotate: trust a current key and update scope {name!r}"
    if sk.key is None:
        yield finding(
            "TD-POL-004",
            name,
            f"key {shown} ({sk.via}) is not in the keystore",
            f"rkt trust --prefix PREFIX KEYFILE for {shown}, or unpin it",
        )
        return
    key = sk.key
    if key.revoked:
        yield finding("TD-POL-006", name, f"key {shown} ({sk.via}) is revoked", fix)
    elif key.weak_reason:
        yield finding("TD-POL-011", name, f"key {shown} is too weak: {key.weak_reason}", fix)
    ends = [t for t in (key.expires, sk.not_after) if t is not None]
    if not ends:
        return
    end = min(ends)
    if end <= now:
        yield finding("TD-POL-005", name, f"key {shown} ({sk.via}) expired {end:%Y-%m-%d}", fix)
    elif end - now <= EXPIRY_WARNING:
        yield finding("TD-POL-007", name, f"key {shown} ({sk.via}) expires {end:%Y-%m-%d}", fix)


def _usable(sk: ScopeKey, now: datetime) -> bool:
    return (
        sk.key is not None
        and sk.key.refusal(now) is None
        and not (sk.not_after is not None and sk.not_after <= now)
    )


def _keys(policy: Policy, keystore: Keystore, now: datetime) -> Iterator[Finding]:
    for name in (DEFAULT, *policy.scopes):
        scope = policy.scope(name)
        if scope.require.type != "signed":
            continue
        keys = scope_keys(policy, name, keystore)
        for sk in keys:
            yield from _key_findings(name, sk, now)
        usable = len({k.fingerprint for k in keys if _usable(k, now)})
        named = name != DEFAULT and scope_kind(name) != "wildcard"
        if usable < scope.require.threshold and (named or scope.require.fingerprints):
            yield finding(
                "TD-POL-010",
                name,
                f"scope {name!r} needs {scope.require.threshold} signature(s) by distinct keys "
                f"but only {usable} usable key(s) are trusted for it: no image can pass",
                f'trust more keys: rkt trust --prefix "{name}" KEYFILE',
            )


def _exceptions(policy: Policy, now: datetime) -> Iterator[Finding]:
    for name in (DEFAULT, *policy.scopes):
        exc = policy.scope(name).exception
        if exc is None:
            continue
        if exc.expires <= now:
            yield finding(
                "TD-POL-008",
                name,
                f"warn exception owned by {exc.owner} expired {exc.expires:%Y-%m-%d}: "
                "the scope enforces",
                'renew it with a new expires, or set mode = "enforce"',
            )
        else:
            yield finding(
                "TD-POL-012",
                name,
                f"scope only warns until {exc.expires:%Y-%m-%d} (owner {exc.owner}"
                + (f": {exc.reason})" if exc.reason else ")"),
            )


def _seccomp(policy: Policy) -> Iterator[Finding]:
    for name in (DEFAULT, *policy.scopes):
        for entry in policy.scope(name).run.seccomp:
            if entry in SECCOMP_BUILTINS or SECCOMP_DIGEST.fullmatch(entry):
                continue
            _digest, problem = _profiles.digest_for(policy, entry)
            if problem:
                yield finding(
                    "TD-POL-009",
                    name,
                    f"seccomp profile {entry!r}: {problem}",
                    "fix the profile file or the name in run.seccomp",
                )


def lint(policy: Policy, keystore: Keystore, now: datetime) -> list[Finding]:
    """Every finding about the policy itself, most severe first."""
    found = [
        *_default_rule(policy),
        *_hierarchy(policy, now),
        *_keys(policy, keystore, now),
        *_exceptions(policy, now),
        *_seccomp(policy),
    ]
    order = ("critical", "high", "medium", "low", "info")
    return sorted(found, key=lambda f: (order.index(f.severity), f.rule_id, f.subject))

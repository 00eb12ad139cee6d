"""Lint rules about keys: the open default (TD-POL-001) and each scope's keys (TD-POL-004..011)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from trustd.shared._dataclass import frozen
from trustd.shared.appc.identifier import ACIdentifier
from trustd.shared.keystore import Keystore
from trustd.shared.ocisig.name import SCHEME
from trustd.shared.policy._signers import keystore_key
from trustd.shared.policy.findings import Finding, finding
from trustd.shared.policy.model import Policy
from trustd.shared.policy.scopes import DEFAULT, parse_docker_key, scope_kind
from trustd.shared.verify import PublicKey, format_fingerprint

EXPIRY_WARNING = timedelta(days=30)


@frozen
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
        elif name.startswith(SCHEME):
            dname = parse_docker_key(name)[0]
            out += [
                ScopeKey(t.key.fingerprint, t.key, f"keystore {t.scope_text}")
                for t in keystore.keyring_for(dname).keys
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


def where(name: str, *rest: str) -> tuple[str, ...]:
    """The key path of ``rest`` inside scope ``name`` in the policy file."""
    return ("default", *rest) if name == DEFAULT else ("scopes", name, *rest)


def default_rule(policy: Policy, keystore: Keystore) -> Iterator[Finding]:
    req = policy.default.require
    if req.type == "reject":
        return
    if req.type == "accept-anything":
        yield finding(
            "TD-POL-001",
            DEFAULT,
            "the default scope is 'accept-anything', not 'reject': images no scope names are "
            "accepted unsigned",
            'set [default.require] type = "reject" and list trusted registries as scopes',
            "high",
            key_path=where(DEFAULT, "require", "type"),
        )
        return
    # "signed": a prefix keyring only vouches for its own names, so with prefix keys only the
    # keystore *is* the allow-list (what reject + scopes would say). Only a key that vouches
    # for every name (a root key, or a key pinned in [default]) makes it an open default.
    everywhere = [k for k in scope_keys(policy, DEFAULT, keystore) if k.key is not None]
    if not everywhere:
        return
    shown = ", ".join(f"{format_fingerprint(k.fingerprint)} ({k.via})" for k in everywhere)
    yield finding(
        "TD-POL-001",
        DEFAULT,
        "the default scope is 'signed', not 'reject', and these keys vouch for every image "
        f"name no scope names: {shown}",
        "trust such keys for a prefix (rkt trust --prefix), or set [default.require] "
        'type = "reject" and list trusted registries as scopes',
        "low",
        key_path=where(DEFAULT, "require", "type"),
    )


def _key_findings(name: str, sk: ScopeKey, now: datetime) -> Iterator[Finding]:
    shown = format_fingerprint(sk.fingerprint)
    fix = f"rotate: trust a current key and update scope {name!r}"
    pinned = sk.via == "pinned"
    path = where(name, "require", *(["fingerprints"] if pinned else []))
    value = sk.fingerprint if pinned else ""
    if sk.key is None:
        yield finding(
            "TD-POL-004",
            name,
            f"key {shown} ({sk.via}) is not in the keystore",
            f"rkt trust --prefix PREFIX KEYFILE for {shown}, or unpin it",
            key_path=path,
            value=value,
        )
        return
    key = sk.key
    if key.revoked:
        yield finding(
            "TD-POL-006",
            name,
            f"key {shown} ({sk.via}) is revoked",
            fix,
            key_path=path,
            value=value,
        )
    elif key.weak_reason:
        yield finding(
            "TD-POL-011",
            name,
            f"key {shown} is too weak: {key.weak_reason}",
            fix,
            key_path=path,
            value=value,
        )
    ends = [t for t in (key.expires, sk.not_after) if t is not None]
    if not ends:
        return
    end = min(ends)
    if end <= now:
        yield finding(
            "TD-POL-005",
            name,
            f"key {shown} ({sk.via}) expired {end:%Y-%m-%d}",
            fix,
            key_path=path,
            value=value,
        )
    elif end - now <= EXPIRY_WARNING:
        yield finding(
            "TD-POL-007",
            name,
            f"key {shown} ({sk.via}) expires {end:%Y-%m-%d}",
            fix,
            key_path=path,
            value=value,
        )


def _usable(sk: ScopeKey, now: datetime) -> bool:
    return (
        sk.key is not None
        and sk.key.refusal(now) is None
        and not (sk.not_after is not None and sk.not_after <= now)
    )


def keys(policy: Policy, keystore: Keystore, now: datetime) -> Iterator[Finding]:
    for name in (DEFAULT, *policy.scopes):
        scope = policy.scope(name)
        if scope.require.type != "signed":
            continue
        keys = scope_keys(policy, name, keystore)
        for sk in keys:
            yield from _key_findings(name, sk, now)
        usable = len({k.fingerprint for k in keys if _usable(k, now)})
        if name.startswith(SCHEME) and scope.require.keystore:  # sigstore keys count too
            usable += len(keystore.pem_keys_for(parse_docker_key(name)[0]))
        named = name != DEFAULT and scope_kind(name) != "wildcard"
        if usable < scope.require.threshold and (named or scope.require.fingerprints):
            yield finding(
                "TD-POL-010",
                name,
                f"scope {name!r} needs {scope.require.threshold} signature(s) by distinct keys "
                f"but only {usable} usable key(s) are trusted for it: no image can pass",
                f'trust more keys: rkt trust --prefix "{name}" KEYFILE',
                key_path=where(name, "require", "threshold"),
            )

"""``rkt policy check``: lint a loaded policy against itself and the keystore."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from trustd.shared.appc.identifier import ACIdentifier
from trustd.shared.keystore import Keystore
from trustd.shared.ocisig.name import SCHEME, DockerName
from trustd.shared.policy import _profiles
from trustd.shared.policy._codec import find_location
from trustd.shared.policy._signers import keystore_key
from trustd.shared.policy.findings import Finding, finding
from trustd.shared.policy.model import (
    SECCOMP_BUILTINS,
    SECCOMP_DIGEST,
    IdentityRule,
    Policy,
    Scope,
)
from trustd.shared.policy.scopes import (
    DEFAULT,
    mangled_spelling,
    parent_of,
    parse_docker_key,
    scope_kind,
)
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


def _where(name: str, *rest: str) -> tuple[str, ...]:
    """The key path of ``rest`` inside scope ``name`` in the policy file."""
    return ("default", *rest) if name == DEFAULT else ("scopes", name, *rest)


def _default_rule(policy: Policy, keystore: Keystore) -> Iterator[Finding]:
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
            key_path=_where(DEFAULT, "require", "type"),
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
        key_path=_where(DEFAULT, "require", "type"),
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
        ("networks", cr.networks, pr.networks),
    ):
        extra = sorted(set(mine) - set(theirs))
        if extra:
            out.append(f"{label} adds {', '.join(extra)}")
    loose = sorted({"any", "unconfined"} & (set(cr.seccomp) - set(pr.seccomp)))
    if loose:
        out.append(f"seccomp allows {', '.join(loose)}")
    if cr.allow_new_privileges and not pr.allow_new_privileges:
        out.append("allows no_new_privs off")
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
                key_path=_where(name),
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
                key_path=_where(name),
            )


# how much of a signature's name a rule pins: the exact reference, then the image's own name
# (tag or digest), then any tag of one repository; remapIdentity rewrites names first
_IDENTITY_RANK = {
    "exactReference": 3,
    "matchRepoDigestOrExact": 2,
    "exactRepository": 1,
    "matchRepository": 1,
    "remapIdentity": 0,
}


def _signature_weaker(child: Scope, parent: Scope) -> list[str]:
    c, p = child.require, parent.require
    if c.type != "signed" or p.type != "signed":
        return []
    out: list[str] = []
    extra = [f for f in c.formats if f not in p.formats]
    if extra:
        out.append(f"formats adds {', '.join(extra)}")
    ci, pi = c.signed_identity, p.signed_identity
    if _IDENTITY_RANK[ci.type] < _IDENTITY_RANK[pi.type]:
        out.append(f"signed_identity {ci.type} is looser than {pi.type}")
    return out


def _signature_rules(policy: Policy) -> Iterator[Finding]:
    for name in policy.scopes:
        parent_name = parent_of(policy, name)
        weaker = _signature_weaker(policy.scope(name), policy.scope(parent_name))
        if weaker:
            yield finding(
                "TD-POL-025",
                name,
                f"scope {name!r} checks signatures less strictly than {parent_name!r}, which it "
                "shadows: " + "; ".join(weaker),
                f"restate {parent_name!r}'s require.formats and require.signed_identity in "
                f"{name!r} (scopes inherit from [default] only)",
                key_path=_where(name, "require"),
            )
    for name in (DEFAULT, *policy.scopes):
        for problem in _identity_problems(name, policy.scope(name)):
            yield finding(
                "TD-POL-026",
                name,
                f"require.signed_identity of {name!r}: {problem}",
                "fix require.signed_identity (docs/adr/0021) or remove it",
                key_path=_where(name, "require", "signed_identity"),
            )
    for name in policy.scopes:
        meant = mangled_spelling(name)
        if meant is not None:
            yield finding(
                "TD-POL-024",
                name,
                f"scope {name!r} spells a docker registry the way converted store names do; "
                f"it still matches those images, but the name as typed is {meant}",
                f'rename [scopes."{name}"] to [scopes."{meant}"]',
                key_path=_where(name),
            )


_IDENTITY_FIELDS = {
    "exactReference": ("docker_reference",),
    "exactRepository": ("docker_repository",),
    "remapIdentity": ("prefix", "signed_prefix"),
}


def _identity_problems(name: str, scope: Scope) -> Iterator[str]:
    rule = scope.require.signed_identity
    if rule == IdentityRule() or scope.require.type != "signed":
        return
    needed = _IDENTITY_FIELDS.get(rule.type, ())
    unused = [
        f for f in ("docker_reference", "docker_repository", "prefix", "signed_prefix")
        if getattr(rule, f) and f not in needed
    ]  # fmt: skip
    if unused:
        yield f"{', '.join(unused)} is ignored by {rule.type}"
    if not {"simple-signing", "sigstore"} & set(scope.require.formats):
        yield "require.formats counts no docker signature format, so no image is matched by it"
    if rule.type == "remapIdentity" and rule.prefix and name.startswith(SCHEME):
        mine = parse_docker_key(name)[0]
        prefix = DockerName.parse(rule.prefix)
        if not (mine.is_within(prefix) or prefix.is_within(mine)):
            yield (
                f"prefix {rule.prefix} names none of this scope's images ({mine}), so it "
                "never remaps one"
            )


def _key_findings(name: str, sk: ScopeKey, now: datetime) -> Iterator[Finding]:
    shown = format_fingerprint(sk.fingerprint)
    fix = f"rotate: trust a current key and update scope {name!r}"
    pinned = sk.via == "pinned"
    path = _where(name, "require", *(["fingerprints"] if pinned else []))
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


def _keys(policy: Policy, keystore: Keystore, now: datetime) -> Iterator[Finding]:
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
                key_path=_where(name, "require", "threshold"),
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
                key_path=_where(name, "exception"),
            )
        else:
            yield finding(
                "TD-POL-012",
                name,
                f"scope only warns until {exc.expires:%Y-%m-%d} (owner {exc.owner}"
                + (f": {exc.reason})" if exc.reason else ")"),
                key_path=_where(name, "exception"),
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
                    key_path=_where(name, "run", "seccomp"),
                    value=entry,
                )


# Capabilities that break container isolation on their own (mount, modules, ptrace of other
# processes, network configuration, raw devices, open_by_handle_at, MAC, BPF, clock, reboot).
DANGEROUS_CAPS: tuple[str, ...] = (
    "CAP_SYS_ADMIN",
    "CAP_SYS_MODULE",
    "CAP_SYS_PTRACE",
    "CAP_NET_ADMIN",
    "CAP_SYS_RAWIO",
    "CAP_DAC_READ_SEARCH",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_BPF",
    "CAP_SYS_BOOT",
    "CAP_SYS_TIME",
)
_TRANSPORT_BITS = ("tls", "http", "pubkey")
_ISOLATION_BITS = ("capabilities", "paths", "seccomp")
_INHERITS = " (and every scope that does not set it)"


def _new(
    name: str, mine: tuple[str, ...], default: tuple[str, ...], wanted: tuple[str, ...]
) -> list[str]:
    """The ``wanted`` items scope ``name`` allows that [default] does not already (the default's
    own finding covers what a scope inherits)."""
    base = () if name == DEFAULT else default
    return [w for w in wanted if w in mine and w not in base]


def _run_rules(policy: Policy, name: str) -> Iterator[Finding]:
    scope, base = policy.scope(name), policy.default
    run, brun = scope.run, base.run
    tail = _INHERITS if name == DEFAULT else ""
    is_default = name == DEFAULT
    if scope.measure != "required" and (is_default or scope.measure != base.measure):
        off = scope.measure == "off"
        yield finding(
            "TD-POL-013",
            name,
            f'measure = "{scope.measure}"{tail}: pod starts '
            + ("are never measured into the TPM" if off else "are unmeasured when no TPM answers")
            + ", so an attestation cannot show what ran",
            'set measure = "required" (and configure a TPM backend)',
            "medium" if off else "low",
            key_path=_where(name, "measure"),
        )
    if _new(name, run.seccomp, brun.seccomp, ("unconfined",)):
        yield finding(
            "TD-POL-014",
            name,
            f'run.seccomp allows "unconfined"{tail}: apps may run with no syscall filter',
            'remove "unconfined" from run.seccomp; list rkt-default or a named profile',
            key_path=_where(name, "run", "seccomp"),
            value="unconfined",
        )
    if _new(name, run.seccomp, brun.seccomp, ("any",)):
        yield finding(
            "TD-POL-015",
            name,
            f'run.seccomp allows "any"{tail}: any loaded filter passes, including a permissive '
            "profile file given at run time",
            'replace "any" with the profiles you vetted (rkt-default, moby-default, sha256-...)',
            key_path=_where(name, "run", "seccomp"),
            value="any",
        )
    caps = _new(name, run.capabilities, brun.capabilities, DANGEROUS_CAPS)
    if caps:
        yield finding(
            "TD-POL-016",
            name,
            f"run.capabilities allows {', '.join(caps)}{tail}: each one lets an app break out "
            "of its container or reconfigure the host",
            f"remove {', '.join(caps)} from run.capabilities (grant them to named scopes only)",
            key_path=_where(name, "run", "capabilities"),
            value=caps[0],
        )
    if run.selinux == "off" and (is_default or brun.selinux != "off"):
        yield finding(
            "TD-POL-017",
            name,
            f'run.selinux = "off"{tail}: pods run without SELinux labels and the gap is not '
            "recorded",
            'set run.selinux = "enforce" (or "permissive" on hosts without SELinux, which '
            "records the gap)",
            key_path=_where(name, "run", "selinux"),
        )
    if _new(name, run.flavors, brun.flavors, ("fly",)):
        yield finding(
            "TD-POL-018",
            name,
            f'run.flavors allows "fly"{tail}: its apps share the host\'s namespaces and run '
            "with every capability and no seccomp filter",
            'remove "fly" from run.flavors (allow it only for a named scope of system tools)',
            key_path=_where(name, "run", "flavors"),
            value="fly",
        )
    opts, bopts = run.insecure_options, brun.insecure_options
    if _new(name, opts, bopts, ("image",)):
        yield finding(
            "TD-POL-019",
            name,
            f'run.insecure_options allows "image"{tail}: images fetched without a signature '
            "check pass the signature requirement",
            'remove "image" from run.insecure_options; sign the images instead',
            key_path=_where(name, "run", "insecure_options"),
            value="image",
        )
    bits = _new(name, opts, bopts, _TRANSPORT_BITS)
    if bits:
        yield finding(
            "TD-POL-020",
            name,
            f"run.insecure_options allows {', '.join(bits)}{tail}: images or keys may come over "
            "unauthenticated connections"
            + (" (pubkey: a key fetched that way is then trusted)" if "pubkey" in bits else ""),
            f"remove {', '.join(bits)} from run.insecure_options; serve registries over HTTPS",
            "high" if "pubkey" in bits else "",
            key_path=_where(name, "run", "insecure_options"),
            value=bits[0],
        )
    bits = _new(name, opts, bopts, _ISOLATION_BITS)
    if bits:
        yield finding(
            "TD-POL-021",
            name,
            f"run.insecure_options allows {', '.join(bits)}{tail}: a run may switch off "
            "capability restriction, masked paths or seccomp and still pass the gate",
            f"remove {', '.join(bits)} from run.insecure_options",
            key_path=_where(name, "run", "insecure_options"),
            value=bits[0],
        )
    if _new(name, run.networks, brun.networks, ("host",)):
        yield finding(
            "TD-POL-023",
            name,
            f'run.networks allows "host"{tail}: its pods share the host\'s network stack, '
            "sockets (abstract unix sockets too) and iptables view",
            'remove "host" from run.networks (allow it only for a named scope of system tools)',
            key_path=_where(name, "run", "networks"),
            value="host",
        )
    accepts = scope.require.type == "accept-anything"
    if accepts and not is_default and base.require.type != "accept-anything":
        yield finding(
            "TD-POL-022",
            name,
            f"scope {name!r} accepts anything: its images are admitted unsigned, without "
            "--insecure-options=image",
            f'set [scopes."{name}".require] type = "signed" and trust its signing key',
            key_path=_where(name, "require", "type"),
        )


def _runtime(policy: Policy) -> Iterator[Finding]:
    for name in (DEFAULT, *policy.scopes):
        yield from _run_rules(policy, name)


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
        *_default_rule(policy, keystore),
        *_hierarchy(policy, now),
        *_keys(policy, keystore, now),
        *_exceptions(policy, now),
        *_seccomp(policy),
        *_runtime(policy),
        *_signature_rules(policy),
    ]
    order = ("critical", "high", "medium", "low", "info")
    found.sort(key=lambda f: (order.index(f.severity), f.rule_id, f.subject))
    return [_locate(policy, f) for f in found]

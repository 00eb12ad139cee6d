"""Lint rules about scopes against the scope they shadow (TD-POL-002, 003, 024..026) and
warn exceptions (TD-POL-008, 012)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from trustd.shared.ocisig.name import SCHEME, DockerName
from trustd.shared.policy._lint_keys import where
from trustd.shared.policy.findings import Finding, finding
from trustd.shared.policy.model import IdentityRule, Policy, Scope
from trustd.shared.policy.scopes import (
    DEFAULT,
    by_conversion,
    mangled_spelling,
    parent_of,
    parse_docker_key,
)
from trustd.shared.vocab import MEASURE_RANK, SELINUX_RANK

_REQ = {"accept-anything": 0, "signed": 1, "reject": 2}


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


def hierarchy(policy: Policy, now: datetime) -> Iterator[Finding]:
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
                key_path=where(name),
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
                key_path=where(name),
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


def signature_rules(policy: Policy) -> Iterator[Finding]:
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
                key_path=where(name, "require"),
            )
    for name in (DEFAULT, *policy.scopes):
        for problem in _identity_problems(name, policy.scope(name)):
            yield finding(
                "TD-POL-026",
                name,
                f"require.signed_identity of {name!r}: {problem}",
                "fix require.signed_identity (docs/adr/0021) or remove it",
                key_path=where(name, "require", "signed_identity"),
            )
    yield from _shared_conversions(policy)
    for name in policy.scopes:
        meant = mangled_spelling(name)
        if meant is not None:
            yield finding(
                "TD-POL-024",
                name,
                f"scope {name!r} spells a docker registry the way converted store names do; "
                f"it still matches those images, but the name as typed is {meant}",
                f'rename [scopes."{name}"] to [scopes."{meant}"]',
                key_path=where(name),
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


def exceptions(policy: Policy, now: datetime) -> Iterator[Finding]:
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
                key_path=where(name, "exception"),
            )
        else:
            yield finding(
                "TD-POL-012",
                name,
                f"scope only warns until {exc.expires:%Y-%m-%d} (owner {exc.owner}"
                + (f": {exc.reason})" if exc.reason else ")"),
                key_path=where(name, "exception"),
            )


def _shared_conversions(policy: Policy) -> Iterator[Finding]:
    """docker:// keys the conversion stores under one AC name (a port's ``:`` becomes ``-``:
    ``docker://reg.example.com:5000/ns`` and ``docker://reg.example.com-5000/ns``): an image
    of that name whose Docker name nothing verified is judged by whichever its annotations
    claim (docs/adr/0021, "Names a member can forge")."""
    docker = tuple(sorted(k for k in policy.scopes if k.startswith(SCHEME)))
    for ac, keys in by_conversion(docker).items():
        differ = [k for k in keys[1:] if policy.scope(k) != policy.scope(keys[0])]
        if differ:
            yield finding(
                "TD-POL-027",
                keys[0],
                f"scopes {', '.join(repr(k) for k in keys)} all name images stored as {ac!r} "
                "and differ: an unsigned image of that name is judged by the one its own "
                "annotations claim, which whoever made it chose",
                "give these scopes the same settings, or keep one",
                key_path=where(keys[0]),
            )

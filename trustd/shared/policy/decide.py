"""The decisions the fetch and run gates take: pure functions of (policy, facts, keystore, now).

Nothing here reads the network or writes anything; the keystore is read to learn which keys
are trusted for a name and in what state. A :class:`Decision` says which scope matched, which
broader scopes it shadowed, every requirement with pass/fail, its reason, and what would
satisfy it. Semantics: docs/adr/0008-policy-semantics.md.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any, Literal

from trustd.shared._dataclass import frozen
from trustd.shared.errors import PolicyViolationError
from trustd.shared.keystore import Keystore
from trustd.shared.ocisig.identity import SignedIdentity
from trustd.shared.ocisig.name import DockerName
from trustd.shared.policy import _profiles
from trustd.shared.policy._signers import signature_check, signer_format
from trustd.shared.policy.model import (
    Mode,
    Policy,
    RunRules,
    Scope,
    Verdict,
)
from trustd.shared.policy.scopes import ImageRef, resolve
from trustd.shared.verify import format_fingerprint
from trustd.shared.vocab import MEASURE_RANK, MeasureMode, SelinuxMode

Gate = Literal["fetch", "run"]


@frozen
class CheckResult:
    """One requirement of the matched scope, evaluated."""

    requirement: str  # signature, flavor, seccomp, capabilities, selinux, insecure-options, ...
    passed: bool
    reason: str
    fix: str = ""  # what would satisfy it (empty when passed)


@frozen
class Decision:
    gate: Gate
    image: str
    image_id: str
    verdict: Verdict
    scope: str
    shadowed: tuple[str, ...]
    mode: Mode
    checks: tuple[CheckResult, ...]
    policy_source: str
    policy_digest: str
    decided_at: datetime
    note: str = ""  # the warn exception in force, or that it expired
    # a docker image's signature evidence: format, docker name, manifest digest, signers
    signature: tuple[tuple[str, str], ...] = ()

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if not c.passed)

    def explain(self) -> str:
        """One line: ``<scope>: <requirement> failed: <reason>; to satisfy: <fix>``."""
        failed = self.failed
        if not failed:
            return f"{self.scope}: all requirements met"
        first = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return (
            f"{self.scope}: {first.requirement} failed: {first.reason}; "
            f"to satisfy: {first.fix}{more}"
        )

    def enforce(self) -> None:
        """Raise :class:`PolicyViolationError` when denied (the gates call this)."""
        if self.verdict == "deny":
            # a fetch refusal stored nothing: explain works by name, never by an ID not stored
            shown = self.image if self.gate == "fetch" else (self.image_id or self.image)
            raise PolicyViolationError(
                f'image "{self.image}" refused by policy: {self.explain()}',
                hint=f"see why: rkt policy explain {shown}",
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "image": self.image,
            "image_id": self.image_id,
            "verdict": self.verdict,
            "scope": self.scope,
            "shadowed": list(self.shadowed),
            "mode": self.mode,
            "note": self.note,
            "checks": [
                {"requirement": c.requirement, "passed": c.passed, "reason": c.reason, "fix": c.fix}
                for c in self.checks
            ],
            "policy": {"source": self.policy_source, "digest": self.policy_digest},
            "decided_at": self.decided_at.isoformat(),
            **({"signature": dict(self.signature)} if self.signature else {}),
        }


@frozen
class RunInput:
    """What a run will apply, as the executor's plan says (one app)."""

    image_name: str  # the AC name from the verified manifest (or NAME:VERSION)
    image_id: str
    signers: tuple[str, ...]  # provenance.signers from the store
    insecure_image: bool  # provenance.insecure
    flavor: str
    seccomp_digest: str | None  # spec_digest of the filter; None: seccomp disabled
    seccomp_source: str
    capabilities: tuple[str, ...] | None  # None: capability restriction disabled
    insecure_options: tuple[str, ...]  # single-bit --insecure-options names in force
    measurement: MeasureMode  # what the executor will do
    selinux: SelinuxMode  # what labelling the host gives the pod
    image_version: str | None = None  # the manifest's ``version`` label (exact scopes)
    private_users: bool = False  # the pod runs in its own user namespace (--private-users)
    no_new_privileges: bool = True  # False: the image's isolator turns no_new_privs off
    host_namespaces: tuple[str, ...] = ()  # shared with the host: "ipc" (--ipc=parent)
    docker_name: str = ""  # a docker image's signers verified for this docker:// name
    manifest_digest: str = ""  # and the manifest digest they signed
    networks: tuple[str, ...] = ("none",)  # host, none, or the CNI networks the pod joins
    # a converted docker image admitted unsigned: the docker:// name its re-hashed manifest
    # records (docker:// scopes match it; nothing signed vouches for it)
    docker_origin: str = ""


def _verdict(scope: Scope, checks: tuple[CheckResult, ...], now: datetime) -> tuple[Verdict, str]:
    exc = scope.exception
    note = ""
    if scope.mode == "warn" and exc is not None:
        if scope.exception_active(now):
            note = f"warn exception owned by {exc.owner} until {exc.expires.isoformat()}"
        else:
            note = (
                f"warn exception owned by {exc.owner} expired {exc.expires.isoformat()}: enforcing"
            )
    if all(c.passed for c in checks):
        return "allow", note
    return ("warn" if scope.exception_active(now) else "deny"), note


def _decision(
    gate: Gate,
    policy: Policy,
    *,
    ref: ImageRef,
    image_id: str,
    checks: list[CheckResult],
    now: datetime,
) -> Decision:
    res = resolve(policy, ref)
    scope = policy.scope(res.scope)
    verdict, note = _verdict(scope, tuple(checks), now)
    return Decision(
        gate=gate,
        image=ref.typed,
        image_id=image_id,
        verdict=verdict,
        scope=res.scope,
        shadowed=res.shadowed,
        mode=scope.mode,
        checks=tuple(checks),
        policy_source=policy.source,
        policy_digest=policy.digest,
        decided_at=now,
        note=note,
    )


def _ref(image: str | ImageRef) -> ImageRef:
    return image if isinstance(image, ImageRef) else ImageRef.parse(image)


def decide_fetch(
    policy: Policy,
    name: str | ImageRef,
    signers: tuple[str, ...],
    keystore: Keystore,
    now: datetime,
    *,
    insecure_image: bool = False,
    image_id: str = "",
    docker_name: DockerName | None = None,
    manifest_digest: str = "",
) -> Decision:
    """The fetch gate: does ``name`` signed by ``signers`` meet its scope's ``require``?

    ``name`` is the verified manifest's name and version label (:meth:`ImageRef.of`), so an
    exact ``name:version`` scope applies; a string is parsed as ``NAME[:VERSION]``.

    ``signers`` are primary fingerprints that verified the image; ``insecure_image`` is true
    when it was fetched with ``--insecure-options=image`` (then ``signers`` is empty).
    """
    ref = _with_docker(_ref(name), docker_name)
    scope = policy.scope(resolve(policy, ref).scope)
    check = signature_check(
        scope,
        ref,
        signers=signers,
        insecure_image=insecure_image,
        keystore=keystore,
        now=now,
        docker_name=docker_name,
    )
    decision = _decision(
        "fetch", policy, ref=ref, image_id=image_id, checks=[_as_check(check)], now=now
    )
    return _with_signature(decision, docker_name, manifest_digest, signers)


def _with_docker(ref: ImageRef, docker: DockerName | None) -> ImageRef:
    """A converted docker image is also judged by its Docker name (docker:// scopes): the
    verified evidence's at fetch, root's own verification's at run."""
    return ref if docker is None or ref.docker is not None else replace(ref, docker=docker)


def _with_signature(
    decision: Decision, docker_name: DockerName | None, digest: str, signers: tuple[str, ...]
) -> Decision:
    """Record what a docker image's signatures said (the decision log and `explain` show it)."""
    if docker_name is None:
        return decision
    formats = sorted({signer_format(s, docker_name) for s in signers})
    facts = (
        ("format", "+".join(formats)),
        ("docker_name", str(docker_name)),
        ("manifest_digest", digest),
        ("signers", ",".join(s if len(s) == 64 else format_fingerprint(s) for s in signers)),
    )
    return replace(decision, signature=facts)


def decide_run(policy: Policy, request: RunInput, keystore: Keystore, now: datetime) -> Decision:
    """The run gate: provenance and everything the plan applies, against the scope in force."""
    docker = DockerName.parse(request.docker_name) if request.docker_name else None
    origin = DockerName.parse(request.docker_origin) if request.docker_origin else None
    ref = _with_docker(
        ImageRef.parse(request.image_name)
        if request.image_version is None
        else ImageRef.of(request.image_name, request.image_version),
        docker or origin,
    )
    scope = policy.scope(resolve(policy, ref).scope)
    sig = signature_check(
        scope,
        ref,
        signers=request.signers,
        insecure_image=request.insecure_image,
        keystore=keystore,
        now=now,
        docker_name=docker,
    )
    checks = [_as_check(sig), *run_checks(policy, scope.run, scope.measure, request)]
    decision = _decision("run", policy, ref=ref, image_id=request.image_id, checks=checks, now=now)
    return _with_signature(decision, docker, request.manifest_digest, request.signers)


def _as_check(result: tuple[bool, str, str]) -> CheckResult:
    passed, reason, fix = result
    return CheckResult("signature", passed, reason, "" if passed else fix)


def run_checks(
    policy: Policy, run: RunRules, measure: MeasureMode, req: RunInput
) -> list[CheckResult]:
    return [
        _flavor(run, req),
        _seccomp(policy, run, req),
        _capabilities(run, req),
        _selinux(run, req),
        _private_users(run, req),
        _insecure(run, req),
        _no_new_privileges(run, req),
        _measurement(measure, req),
        _host_namespaces(run, req),
        _networks(run, req),
    ]


def _no_new_privileges(run: RunRules, req: RunInput) -> CheckResult:
    if req.no_new_privileges:
        return CheckResult("no-new-privileges", True, "no_new_privs is set")
    if run.allow_new_privileges:
        return CheckResult(
            "no-new-privileges", True, "the image turns no_new_privs off, which is allowed"
        )
    return CheckResult(
        "no-new-privileges",
        False,
        "the image's os/linux/no-new-privileges isolator is false: setuid programs and file "
        "capabilities could raise the app's privileges",
        "drop the isolator from the image, or set run.allow_new_privileges = true for its scope",
    )


def _host_namespaces(run: RunRules, req: RunInput) -> CheckResult:
    shared = [ns for ns in req.host_namespaces if ns not in run.host_namespaces]
    if not shared:
        what = ", ".join(req.host_namespaces) or "none"
        return CheckResult("host-namespaces", True, f"host namespaces shared: {what}")
    return CheckResult(
        "host-namespaces",
        False,
        f"the pod would share the host's {', '.join(shared)} namespace, which this scope "
        "does not allow (run.host_namespaces)",
        'run without --ipc=parent, or allow it: run.host_namespaces ["ipc"]',
    )


def _networks(run: RunRules, req: RunInput) -> CheckResult:
    """run.networks: an allow-list of network names; ``*`` admits any CNI network (never
    ``host``, which a scope must name itself). fly shares the host's network by design: the
    flavors rule decides it."""
    allowed = ", ".join(run.networks) or "none listed"
    if req.flavor == "fly":
        return CheckResult("networks", True, "fly shares the host's network (flavors decides)")
    bad = [
        n
        for n in req.networks
        if n not in run.networks and (n in ("host", "none") or "*" not in run.networks)
    ]
    if not bad:
        return CheckResult("networks", True, f"{', '.join(req.networks)} (allowed: {allowed})")
    return CheckResult(
        "networks",
        False,
        f"network {bad[0]} is not allowed for this scope (allowed: {allowed})",
        f"run with --net={run.networks[0] if run.networks else 'none'}, or add "
        f'"{bad[0]}" to run.networks',
    )


def _flavor(run: RunRules, req: RunInput) -> CheckResult:
    allowed = ", ".join(run.flavors)
    if req.flavor in run.flavors:
        return CheckResult("flavor", True, f"stage1 flavor {req.flavor} is allowed ({allowed})")
    return CheckResult(
        "flavor",
        False,
        f"stage1 flavor {req.flavor} is not allowed (allowed: {allowed})",
        f"run with stage1 flavor {run.flavors[0]}",
    )


def _seccomp(policy: Policy, run: RunRules, req: RunInput) -> CheckResult:
    allowed = ", ".join(run.seccomp)
    if req.seccomp_digest is None:
        if "unconfined" in run.seccomp or "seccomp" in run.insecure_options:
            return CheckResult("seccomp", True, "seccomp is disabled, which this scope allows")
        return CheckResult(
            "seccomp",
            False,
            f"seccomp is disabled ({req.seccomp_source or '--insecure-options=seccomp'}); "
            f"allowed profiles: {allowed}",
            "run without --insecure-options=seccomp",
        )
    problems: list[str] = []
    for entry in run.seccomp:
        digest, problem = _profiles.digest_for(policy, entry)
        if problem:
            problems.append(problem)
        hit = (
            entry == "any"
            or digest == req.seccomp_digest
            or (entry == "unconfined" and req.seccomp_digest == _profiles.unconfined_digest())
        )
        if hit:
            return CheckResult("seccomp", True, f"seccomp filter matches {entry}")
    detail = f" ({'; '.join(problems)})" if problems else ""
    return CheckResult(
        "seccomp",
        False,
        f"the app's seccomp filter ({req.seccomp_source}, {req.seccomp_digest}) is none of: "
        f"{allowed}{detail}",
        f'{_seccomp_fix(policy, run.seccomp[0])}, or allow "{req.seccomp_digest}" in run.seccomp',
    )


def _seccomp_fix(policy: Policy, first: str) -> str:
    if first != "rkt-default" and first in _profiles.profile_paths(policy):
        return f"run with --seccomp=profile={first}"
    return f"drop the image's seccomp isolator and --seccomp to get {first}"


def _capabilities(run: RunRules, req: RunInput) -> CheckResult:
    if req.capabilities is None:
        if "capabilities" in run.insecure_options:
            return CheckResult("capabilities", True, "restriction disabled, which is allowed")
        return CheckResult(
            "capabilities",
            False,
            "capability restriction is disabled (--insecure-options=capabilities)",
            "run without --insecure-options=capabilities",
        )
    extra = sorted(set(req.capabilities) - set(run.capabilities))
    if not extra:
        return CheckResult("capabilities", True, "every capability is on the allow-list")
    return CheckResult(
        "capabilities",
        False,
        f"{', '.join(extra)} not on the scope's allow-list",
        f"{_caps_fix(req.capabilities, extra, run.capabilities)}add them to run.capabilities",
    )


def _selinux(run: RunRules, req: RunInput) -> CheckResult:
    if run.selinux == "enforce" and req.selinux != "enforce":
        return CheckResult(
            "selinux",
            False,
            f"the scope requires SELinux labelling but the host gives {req.selinux}",
            "run on a host with SELinux enforcing, or set run.selinux = permissive",
        )
    gap = (
        " (gap recorded: no SELinux)"
        if run.selinux == "permissive" and req.selinux == "off"
        else ""
    )
    return CheckResult("selinux", True, f"scope: {run.selinux}, host: {req.selinux}{gap}")


def _insecure(run: RunRules, req: RunInput) -> CheckResult:
    bad = [n for n in req.insecure_options if n not in run.insecure_options]
    if not bad:
        used = ", ".join(req.insecure_options) or "none"
        return CheckResult("insecure-options", True, f"in use: {used}")
    return CheckResult(
        "insecure-options",
        False,
        f"--insecure-options={','.join(bad)} is not allowed for this scope",
        f"run without --insecure-options={','.join(bad)}",
    )


def _private_users(run: RunRules, req: RunInput) -> CheckResult:
    if run.private_users == "required" and not req.private_users:
        return CheckResult(
            "private-users",
            False,
            "the scope requires a user namespace (run.private_users = required) but the pod "
            "runs without --private-users: its root would be the host's root",
            "run it with --private-users",
        )
    state = "on" if req.private_users else "off"
    return CheckResult("private-users", True, f"scope: {run.private_users}, pod: {state}")


def _measurement(measure: MeasureMode, req: RunInput) -> CheckResult:
    if MEASURE_RANK[req.measurement] >= MEASURE_RANK[measure]:
        return CheckResult("measurement", True, f"scope: {measure}, executor: {req.measurement}")
    return CheckResult(
        "measurement",
        False,
        f"the scope needs measurement {measure}, the executor will do {req.measurement}",
        f"configure TPM measurement as {measure} (needs a TPM backend)",
    )


def accepts_unsigned(policy: Policy, name: str | ImageRef) -> bool:
    """The scope for ``name`` admits images without signatures (``require.type =
    "accept-anything"``): an explicit policy opt-out, recorded like the flag."""
    scope = policy.scope(resolve(policy, _ref(name)).scope)
    return scope.require.type == "accept-anything"


def allows_unsigned(policy: Policy, name: str | ImageRef) -> bool:
    """The scope for ``name`` lets an image in without a signature when the request asks
    with ``--insecure-options=image``: it accepts anything, or it requires signatures but
    lists ``image`` in ``run.insecure_options`` (the fetch gate's rule, checked up front)."""
    scope = policy.scope(resolve(policy, _ref(name)).scope)
    if scope.require.type == "accept-anything":
        return True
    return scope.require.type == "signed" and "image" in scope.run.insecure_options


def signed_identity(policy: Policy, name: str | ImageRef) -> SignedIdentity:
    """The identity rule a docker image's signatures must meet in ``name``'s scope."""
    return policy.scope(resolve(policy, _ref(name)).scope).require.signed_identity.rule()


def _caps_fix(have: tuple[str, ...], extra: list[str], allowed: tuple[str, ...]) -> str:
    """A flag that gives the app a set the allow-list admits (issue #15: never
    ``--caps-remove`` for a set given with ``--caps-retain``, which cannot be combined).
    The default set without the extras is ``--caps-remove``; any other set is restated
    with ``--caps-retain`` (it replaces the image's isolator and any other flag); a set of
    nothing but extras falls back to the allowed part of the default set."""
    from trustd.shared.isolation.caps import DEFAULT_CAPS  # noqa: PLC0415

    if set(have) == DEFAULT_CAPS:
        return f"run with --caps-remove={','.join(extra)}, or "
    kept = sorted(set(have) - set(extra)) or sorted(DEFAULT_CAPS & set(allowed))
    return f"run with --caps-retain={','.join(kept)}, or " if kept else ""

"""The decisions the fetch and run gates take: pure functions of (policy, facts, keystore, now).

Nothing here reads the network or writes anything; the keystore is read to learn which keys
are trusted for a name and in what state. A :class:`Decision` says which scope matched, which
broader scopes it shadowed, every requirement with pass/fail, its reason, and what would
satisfy it. Semantics: docs/adr/0008-policy-semantics.md.

This module holds the decision and both gates; the run gate's checks of what a run applies,
with :class:`RunInput` and :class:`CheckResult`, are in :mod:`._run_checks`.
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
from trustd.shared.policy._run_checks import CheckResult, RunInput, run_checks
from trustd.shared.policy._signers import signature_check, signer_format
from trustd.shared.policy.model import (
    Mode,
    Policy,
    Scope,
    Verdict,
)
from trustd.shared.policy.scopes import ImageRef, resolve
from trustd.shared.verify import format_fingerprint

__all__ = [
    "CheckResult",
    "Decision",
    "Gate",
    "RunInput",
    "accepts_unsigned",
    "allows_unsigned",
    "decide_fetch",
    "decide_run",
    "run_checks",
    "signed_identity",
]

Gate = Literal["fetch", "run"]


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

"""The run gate's checks of what a run will apply (private to :mod:`.decide`): the facts
(:class:`RunInput`), one evaluated requirement (:class:`CheckResult`) and :func:`run_checks`,
one check per rule of the scope's ``run`` table and its ``measure``, each with the fix it
suggests. Semantics: docs/adr/0008-policy-semantics.md.
"""

from __future__ import annotations

from trustd.shared._dataclass import frozen
from trustd.shared.policy import _profiles
from trustd.shared.policy.model import Policy, RunRules
from trustd.shared.vocab import MEASURE_RANK, MeasureMode, SelinuxMode


@frozen
class CheckResult:
    """One requirement of the matched scope, evaluated."""

    requirement: str  # signature, flavor, seccomp, capabilities, selinux, insecure-options, ...
    passed: bool
    reason: str
    fix: str = ""  # what would satisfy it (empty when passed)


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

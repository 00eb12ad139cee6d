"""The run gate: the policy in force decides every app of a pod, at prepare and again at run.

Each decision (allow, warn, deny) is appended to root's hash-chained decision log,
``<dir>/private/decisions.jsonl``, before it is enforced, so refusals are on record too. Root
opens it by fd beneath its checked ``private/`` directory, following no symlink; it never
writes the group's ``<dir>/policy/decisions.jsonl``. What the gate admits comes out as a
:class:`GatedPod`, which only :func:`gate_run` can build: run, enter and measurement take
nothing else. It carries, per app, the image name and ``version`` label read from the
re-verified manifest (so exact ``name:version`` scopes apply, ADR 0008), the resolved
seccomp filter's one digest (the same one the gate checked and the TPM event records), and
the decision.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import field
from datetime import UTC, datetime

from trustd.privileged.executor._seccomp import check_profile, spec_from_plan
from trustd.privileged.executor.plan import AppPlan, PodPlan
from trustd.privileged.treestore.datadir import DataDir, open_root_log
from trustd.privileged.treestore.render import RenderedTree
from trustd.shared._dataclass import frozen
from trustd.shared.errors import LocalStateError
from trustd.shared.isolation import spec_digest
from trustd.shared.keystore import Keystore
from trustd.shared.policy import Decision, ImageRef, Policy, RunInput, decide_run
from trustd.shared.policy.log import append_decision_fd
from trustd.shared.store._docker_admit import docker_origin
from trustd.shared.vocab import MeasureMode, SelinuxMode

_GATE = object()  # only this module holds it: the GatedPod constructor checks for it


@frozen
class GatedApp:
    """One app as the gate admitted it."""

    plan: AppPlan
    image: ImageRef  # from the re-verified manifest: name and version label
    signers: tuple[str, ...]  # that verified it now (empty: admitted unsigned)
    insecure_image: bool
    seccomp_digest: str | None  # the filter's spec digest; None: seccomp disabled
    decision: Decision
    docker_name: str = ""  # a converted docker image: the docker:// name its signers vouch for
    manifest_digest: str = ""  # and the manifest digest they signed

    @property
    def name(self) -> str:
        return self.plan.name


@frozen
class GatedPod:
    """A pod plan the run gate admitted. Construct it only through :func:`gate_run`."""

    plan: PodPlan
    apps: tuple[GatedApp, ...]
    measurement: MeasureMode
    token: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.token is not _GATE:
            raise TypeError("a GatedPod is built only by the run gate (gate_run)")

    def app(self, name: str) -> GatedApp:
        return next(a for a in self.apps if a.plan.name == name)


def _seccomp_digest(app: AppPlan) -> str | None:
    if app.seccomp is None:
        return None
    check_profile(app.seccomp, app.capabilities)
    return spec_digest(spec_from_plan(app.seccomp))


def selinux_state(plan: PodPlan) -> SelinuxMode:
    """What labelling the host gives the pod (not what the policy asked for)."""
    if plan.selinux_mode == "off":
        return "off"
    return "enforce" if plan.selinux_process else "permissive"


def _manifest_digest(tree: RenderedTree) -> str:
    """The docker manifest digest root just verified the signatures over (bound to the ACI
    by its annotation, trustd/shared/store/_docker_admit.py), or ""."""
    if not tree.docker_name:
        return ""
    return tree.manifest.annotation("appc.io/docker/manifesthash") or ""


def run_input(
    plan: PodPlan, app: AppPlan, tree: RenderedTree, digest: str | None, measurement: MeasureMode
) -> RunInput:
    manifest = tree.manifest
    return RunInput(
        image_name=str(manifest.name),
        image_version=manifest.label("version"),
        image_id=app.image_key,
        signers=tree.signers,
        insecure_image=tree.insecure,
        docker_name=tree.docker_name,
        manifest_digest=_manifest_digest(tree),
        docker_origin=str(docker_origin(manifest) or ""),
        flavor=plan.flavor,
        seccomp_digest=digest,
        seccomp_source=app.seccomp.source if app.seccomp else "--insecure-options=seccomp",
        capabilities=app.capabilities,
        insecure_options=plan.insecure,
        measurement=measurement,
        selinux=selinux_state(plan),
        private_users=plan.private_users is not None,
        no_new_privileges=app.no_new_privileges,
        host_namespaces=("ipc",) if plan.ipc == "parent" else (),
        networks=plan.network.names(),
    )


def _tree_for(app: AppPlan, trees: Sequence[RenderedTree]) -> RenderedTree:
    """The re-verified tree this app runs from; the plan must name exactly it."""
    for tree in trees:
        if str(tree.path) == app.tree:
            if str(tree.manifest.name) != app.image_name:
                raise LocalStateError(
                    f"app {app.name!r}: the plan names image {app.image_name!r} but its tree "
                    f"holds {tree.manifest.name}",
                    hint="prepare the pod again",
                )
            return tree
    raise LocalStateError(
        f"app {app.name!r}: its image {app.image_key} was not re-verified before the gate",
        hint="prepare the pod again",
    )


def gate_run(
    plan: PodPlan,
    trees: Sequence[RenderedTree],
    policy: Policy,
    keystore: Keystore,
    *,
    data: DataDir,
    measurement: MeasureMode,
) -> GatedPod:
    """Decide, record, then enforce each app; the first denial stops the pod.

    ``trees`` are the apps' images as just re-verified (rendered or re-checked); the decision
    is taken on their manifests and signers, never on names the plan recorded."""
    now = datetime.now(UTC)
    apps = []
    for app in plan.apps:
        tree = _tree_for(app, trees)
        digest = _seccomp_digest(app)
        facts = run_input(plan, app, tree, digest, measurement)
        decision = decide_run(policy, facts, keystore, now)
        ref = ImageRef.of(facts.image_name, facts.image_version)
        apps.append(
            GatedApp(
                app,
                ref,
                tree.signers,
                tree.insecure,
                digest,
                decision,
                facts.docker_name,
                facts.manifest_digest,
            )
        )
    fd = open_root_log(data, create=True)
    if fd is None:  # pragma: no cover - create=True always opens or raises
        raise LocalStateError("cannot open root's decision log")
    try:
        for gated in apps:
            append_decision_fd(fd, str(data.private / "decisions.jsonl"), gated.decision)
    finally:
        os.close(fd)
    for gated in apps:
        gated.decision.enforce()
    return GatedPod(plan, tuple(apps), measurement, token=_GATE)

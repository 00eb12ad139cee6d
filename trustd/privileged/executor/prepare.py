"""prepare: resolve each app's image by ID, render or re-check it, and write the pod's plan.

Runs as root. Images are named by store key only; each tree is rendered from re-verified
bytes, or, if rendered before, re-checked against the keyring in force (no re-hash).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from trustd.privileged.executor._gate import GatedPod, gate_run
from trustd.privileged.executor._ids import resolve_id
from trustd.privileged.executor._isolate import plan_isolation
from trustd.privileged.executor.plan import AppPlan, PodPlan
from trustd.privileged.pod import Pod, PodStore
from trustd.privileged.pod.lifecycle import INFO, MANIFEST, PLAN
from trustd.privileged.treestore.render import RenderedTree, render_tree
from trustd.shared._fsutil import atomic_write
from trustd.shared.appc.manifest import ImageManifest
from trustd.shared.codec import read_json
from trustd.shared.errors import TrustdError, UserError
from trustd.shared.insecure import Insecure, insecure_names
from trustd.shared.keystore import Keystore
from trustd.shared.policy import ImageRef, Policy, accepts_unsigned, resolve
from trustd.shared.request import AppRequest, RunRequest
from trustd.shared.store import ImageStore
from trustd.shared.vocab import SELINUX_MODES, MeasureMode, SelinuxMode


@dataclass(frozen=True, slots=True)
class Prepared:
    pod: Pod
    gated: GatedPod  # what the run gate admitted (only the gate builds one)
    lock_fd: int  # holds the pod's flock; run keeps it for the pod's life

    def __post_init__(self) -> None:
        if not isinstance(self.gated, GatedPod):
            raise TypeError("a prepared pod carries the run gate's GatedPod")

    @property
    def plan(self) -> PodPlan:
        return self.gated.plan


def require_root() -> None:
    if os.geteuid() != 0:
        raise UserError("cannot run as unprivileged user", hint="run it as root (sudo)")


def _default_name(manifest: ImageManifest) -> str:
    base = manifest.name.segments[-1]
    cleaned = "".join(c if c.isalnum() else "-" for c in base.lower()).strip("-")
    return "-".join(p for p in cleaned.split("-") if p) or "app"


def _handlers(manifest: ImageManifest, name: str) -> tuple[tuple[str, ...], ...]:
    handlers = (manifest.app.event_handlers or ()) if manifest.app else ()
    return tuple(h.exec for h in handlers if h.name == name)


def _plan_app(
    req: AppRequest, tree: RenderedTree, key: str, request: RunRequest, policy: Policy
) -> AppPlan:
    manifest = tree.manifest
    app = manifest.app
    command = req.exec or (app.exec if app else None)
    if not command:
        raise UserError(f'image "{manifest.name}" has no app to run', hint="pass --exec=PATH")
    user = req.user or (app.user if app else "0")
    group = req.group or (app.group if app else "0")
    declared = (app.environment or ()) if app else ()
    env = tuple((e.name, e.value) for e in declared) + req.env
    isolation = plan_isolation(req, manifest, request, policy)
    return AppPlan(
        name=req.name or _default_name(manifest),
        image_key=key,
        image_name=str(manifest.name),
        image_version=manifest.label("version"),
        tree=str(tree.path),
        signers=tree.signers,
        insecure_image=tree.insecure,
        exec=(*command, *req.args),
        env=env,
        uid=resolve_id(tree.rootfs, user, kind="user"),
        gid=resolve_id(tree.rootfs, group, kind="group"),
        user=user,
        group=group,
        working_dir=req.working_dir or (app.working_directory if app else None) or "/",
        readonly_rootfs=req.readonly_rootfs,
        mounts=req.mounts,
        pre_start=_handlers(manifest, "pre-start"),
        post_stop=_handlers(manifest, "post-stop"),
        **isolation,
    )


def _pod_manifest(plan: PodPlan) -> bytes:
    """The appc PodManifest (0.8.11) rkt kept as ``pod``."""
    doc = {
        "acKind": "PodManifest",
        "acVersion": "0.8.11",
        "apps": [
            {
                "name": a.name,
                "image": {"name": a.image_name, "id": a.image_key},
                "app": {
                    "exec": list(a.exec),
                    "user": a.user,
                    "group": a.group,
                    "workingDirectory": a.working_dir,
                    "environment": [{"name": k, "value": v} for k, v in a.env],
                },
                "readOnlyRootFS": a.readonly_rootfs,
                "mounts": [{"volume": m.volume, "path": m.target} for m in a.mounts],
            }
            for a in plan.apps
        ],
        "volumes": [
            {
                "name": v.name,
                "kind": v.kind,
                "readOnly": v.readonly,
                **({"source": v.source} if v.source else {}),
            }
            for v in plan.volumes
        ],
        "annotations": [{"name": "coreos.com/rkt/stage1/flavor", "value": plan.flavor}],
    }
    return json.dumps(doc, indent=2).encode()


def _selinux_mode(policy: Policy, apps: list[AppPlan]) -> SelinuxMode:
    """The strictest SELinux mode the policy asks of any app's scope."""
    modes = {
        policy.scope(resolve(policy, ImageRef.of(a.image_name, a.image_version)).scope).run.selinux
        for a in apps
    }
    return next(m for m in SELINUX_MODES if m in modes or m == "off")


def _selinux(mode: SelinuxMode, pod: Pod, pods: PodStore) -> dict[str, Any]:
    """svirt labels for the pod (per-pod MCS pair), or the recorded reason there are none."""
    from trustd.privileged.isolation.selinux import pod_labels  # noqa: PLC0415

    labels = pod_labels(mode, pod.uuid, pods.root.parent)
    if labels is None:
        return {"selinux_mode": mode, "selinux_process": None, "selinux_file": None}
    return {"selinux_mode": mode, "selinux_process": labels.process, "selinux_file": labels.file}


def prepare(
    request: RunRequest,
    store: ImageStore,
    keystore: Keystore,
    pods: PodStore,
    *,
    policy: Policy,
    measurement: MeasureMode,
) -> Prepared:
    require_root()
    if not request.apps:
        raise UserError("must provide at least one image")
    pod, fd = pods.new()
    try:
        apps, trees = [], []
        for req in request.apps:
            record = store.resolve(req.image)
            ref = ImageRef.of(record.name, record.label("version"))
            allow = Insecure.IMAGE in request.insecure or accepts_unsigned(policy, ref)
            tree = render_tree(store, record, keystore, allow_insecure=allow)
            trees.append(tree)
            apps.append(_plan_app(req, tree, record.key, request, policy))
        if len({a.name for a in apps}) != len(apps):
            raise UserError("two apps have the same name", hint="give each one --name=NAME")
        plan = PodPlan(
            uuid=pod.uuid,
            flavor=request.flavor,
            net=request.net,
            hostname=request.hostname or f"rkt-{pod.uuid}",
            apps=tuple(apps),
            volumes=request.volumes,
            insecure=tuple(insecure_names(request.insecure)),
            masked_paths=Insecure.PATHS not in request.insecure,
            mds=request.mds_register,
            **_selinux(_selinux_mode(policy, apps), pod, pods),
        )
        gated = gate_run(
            plan, trees, policy, keystore, data_dir=pods.root.parent, measurement=measurement
        )
        write_plan(pod, plan)
        atomic_write(pod.private / MANIFEST, _pod_manifest(plan), mode=0o600)
        atomic_write(pod.path / INFO, public_info(plan), mode=0o640)
        (pod.path / "pod-created").write_text(datetime.now(UTC).isoformat(timespec="seconds"))
        pod = pods.move(pod, "prepared")
    except TrustdError:
        from trustd.privileged.isolation.selinux import McsAllocator  # noqa: PLC0415

        McsAllocator(pods.root.parent).release(pod.uuid)
        pods.move(pod, "garbage")
        os.close(fd)
        raise
    return Prepared(pod, gated, fd)


def public_info(plan: PodPlan) -> bytes:
    """What ``rkt list``/``rkt status`` show group rkt: no env, no args, no volumes."""
    apps = [
        {"name": a.name, "image_key": a.image_key, "image_name": a.image_name} for a in plan.apps
    ]
    return json.dumps({"apps": apps}, indent=2).encode()


def write_plan(pod: Pod, plan: PodPlan) -> None:
    """The plan holds the apps' environment (secrets): root-only, under private/."""
    atomic_write(pod.check_private() / PLAN, plan.to_json().encode(), mode=0o600)


def load_plan(pod: Pod) -> PodPlan:
    return read_json(pod.check_private() / PLAN, PodPlan, hint="prepare the pod again")

"""prepare: render or re-check each app's image, and write the pod's plan.

Runs as root. Images are named by full image ID only (:class:`StoreKey`, checked against
its exact grammar; the front end resolves names and prefixes before handing over), never
looked up in the group-writable index. Each tree is rendered from re-verified bytes, or, if
rendered before, re-checked against the keyring in force (no re-hash). Prepare holds the tree
lock (shared) from the first render until the plan is written, so gc never collects a tree a
pod is about to reference, and stamps each image's last use.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from trustd.privileged.executor._gate import GatedPod, gate_run
from trustd.privileged.executor._ids import resolve_id
from trustd.privileged.executor._isolate import plan_isolation
from trustd.privileged.executor._mounts import app_mounts
from trustd.privileged.executor.plan import AppPlan, PodPlan
from trustd.privileged.net import PodNetPlan, resolve_ports
from trustd.privileged.pod import Pod, PodStore
from trustd.privileged.pod.lifecycle import INFO, MANIFEST, PLAN, PodLock
from trustd.privileged.treestore.datadir import PRIVATE, DataDir, stamp_used, tree_lock
from trustd.privileged.treestore.render import AcceptUnsigned, RenderedTree, render_tree
from trustd.shared._dataclass import frozen
from trustd.shared._fsutil import atomic_write, fsync_dir
from trustd.shared.appc.manifest import VALID_OS_ARCH, ImageManifest, os_arch_error
from trustd.shared.codec import read_json
from trustd.shared.errors import LocalStateError, TrustdError, UserError
from trustd.shared.imageid import StoreKey
from trustd.shared.insecure import Insecure, insecure_names
from trustd.shared.keystore import Keystore
from trustd.shared.net import NetOptions
from trustd.shared.policy import ImageRef, Policy, accepts_unsigned, resolve, signed_identity
from trustd.shared.request import AppRequest, Mount, RunRequest
from trustd.shared.store.admit import IdentityFor
from trustd.shared.vocab import SELINUX_MODES, MeasureMode, Net, SelinuxMode


@frozen
class Prepared:
    pod: Pod
    gated: GatedPod  # what the run gate admitted (only the gate builds one)
    lock: PodLock  # holds the pod's locks; run keeps it for the pod's life

    def __post_init__(self) -> None:
        if not isinstance(self.gated, GatedPod):
            raise TypeError("a prepared pod carries the run gate's GatedPod")

    @property
    def plan(self) -> PodPlan:
        return self.gated.plan


LINUX_OS_ARCH = {"linux": VALID_OS_ARCH["linux"]}  # what runs here (rkt's stage0 ValidOSArch)


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


def identity_for(policy: Policy) -> IdentityFor:
    """The policy's ``require.signed_identity`` for the name in the image's own manifest (and
    the Docker name it records, for docker:// scopes)."""
    return lambda name, version, docker: signed_identity(
        policy, ImageRef(ImageRef.of(name, version).name, version or None, docker)
    )


def accept_unsigned_for(insecure_image: bool, policy: Policy) -> AcceptUnsigned:
    """Whether an image without a verifying signature may pass: the request's
    --insecure-options=image, or the policy for the name in the image's own manifest (never
    what the store index says about it)."""
    return lambda name, version, docker: (
        insecure_image
        or accepts_unsigned(
            policy, ImageRef(ImageRef.of(name, version).name, version or None, docker)
        )
    )


def _check_requested(req: AppRequest, key: StoreKey, manifest: ImageManifest) -> None:
    """An image asked for by name is that name (and version) by its own verified manifest,
    whatever the index that mapped the name to ``key`` said."""
    name = str(manifest.name)
    version = next(
        (lbl.value for lbl in manifest.labels or () if lbl.name.value == "version"), None
    )
    wanted = f"{req.expected_name}:{req.expected_version}" if req.expected_version else None
    if (req.expected_name is not None and name != req.expected_name) or (
        req.expected_version is not None and version != req.expected_version
    ):
        raise LocalStateError(
            f"image {key.id[:39]}… is {name}:{version or '-'} by its verified manifest, not the "
            f"requested {wanted or req.expected_name}",
            hint="the store index maps the name to another image; rkt image rm it and fetch "
            "again, or run it by its full ID",
        )


def _runs_here(manifest: ImageManifest) -> None:
    """rkt's check before a run: the image names its os and arch, and they are linux's."""
    for label in ("os", "arch"):
        if manifest.label(label) is None:
            raise UserError(
                f"missing {label} label in the image manifest",
                hint=f'image "{manifest.name}" must carry the labels os=linux and arch=<cpu>',
            )
    why = os_arch_error(manifest.label("os") or "", manifest.label("arch"), LINUX_OS_ARCH)
    if why is not None:
        raise UserError(why, hint=f'image "{manifest.name}" is not built for Linux')


def _plan_app(
    req: AppRequest, tree: RenderedTree, key: str, request: RunRequest, policy: Policy
) -> AppPlan:
    manifest = tree.manifest
    _runs_here(manifest)
    app = manifest.app
    command = req.exec or (app.exec if app else None)
    if not command:
        raise UserError(f'image "{manifest.name}" has no app to run', hint="pass --exec=PATH")
    user = req.user or (app.user if app else "0")
    group = req.group or (app.group if app else "0")
    declared = (app.environment or ()) if app else ()
    env = _merged(
        request.inherited_env, tuple((e.name, e.value) for e in declared), request.env, req.env
    )
    isolation = plan_isolation(req, manifest, request, policy)
    gids = req.supplementary_gids
    if gids is None:
        gids = (app.supplementary_gids or ()) if app else ()
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
        mounts=_app_mounts(request.mounts, req.mounts),
        supplementary_gids=tuple(gids),
        annotations=req.annotations,
        user_annotations=req.user_annotations,
        user_labels=req.user_labels,
        pre_start=_handlers(manifest, "pre-start"),
        post_stop=_handlers(manifest, "post-stop"),
        **isolation,
    )


def _merged(*layers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """rkt's environment precedence: each later layer replaces a name an earlier one set."""
    merged: dict[str, str] = {}
    for layer in layers:
        merged.update(layer)
    return tuple(merged.items())


def _app_mounts(pod: tuple[Mount, ...], app: tuple[Mount, ...]) -> tuple[Mount, ...]:
    """--mount before the images applies to every app; the app's own wins for a path."""
    own = {m.target for m in app}
    return (*(m for m in pod if m.target not in own), *app)


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
                    **_app_fields(a),
                },
                "readOnlyRootFS": a.readonly_rootfs,
                "mounts": [{"volume": m.volume, "path": m.target} for m in a.mounts],
                **(
                    {"annotations": [{"name": k, "value": v} for k, v in a.annotations]}
                    if a.annotations
                    else {}
                ),
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


def _app_fields(a: AppPlan) -> dict[str, Any]:
    """The pod manifest's app fields for rkt's per-app flags, present only when set."""
    app: dict[str, Any] = {}
    if a.supplementary_gids:
        app["supplementaryGIDs"] = list(a.supplementary_gids)
    isolators = []
    if a.oom_score_adj is not None:
        isolators.append({"name": "os/linux/oom-score-adj", "value": a.oom_score_adj})
    if a.cpu_shares is not None:
        isolators.append({"name": "os/linux/cpu-shares", "value": a.cpu_shares})
    if not a.no_new_privileges:
        isolators.append({"name": "os/linux/no-new-privileges", "value": False})
    if isolators:
        app["isolators"] = isolators
    if a.user_annotations:
        app["userAnnotations"] = dict(a.user_annotations)
    if a.user_labels:
        app["userLabels"] = dict(a.user_labels)
    return app


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


def _private_users(request: RunRequest, uuid: str, pods: PodStore) -> int | None:
    """--private-users: the pod's uid shift, allocated now (rkt's private-users-prepared)."""
    if not request.private_users:
        return None
    if request.flavor == "fly":
        raise UserError(
            "--private-users does not apply to the fly stage1 (it runs in the host's namespaces)",
            hint="drop --private-users, or use --stage1-name=container",
        )
    from trustd.privileged.executor._userns import RangeAllocator  # noqa: PLC0415

    return RangeAllocator(pods.root.parent / PRIVATE).allocate(uuid)


def release_private_users(pods: PodStore, uuid: str) -> None:
    """Give the pod's uid range back (nothing when it had none)."""
    if (pods.root.parent / PRIVATE / "userns").is_dir():
        from trustd.privileged.executor._userns import RangeAllocator  # noqa: PLC0415

        RangeAllocator(pods.root.parent / PRIVATE).release(uuid)


def prepare(
    request: RunRequest,
    data: DataDir,
    keystore: Keystore,
    pods: PodStore,
    *,
    policy: Policy,
    measurement: MeasureMode,
    network: PodNetPlan | None = None,
    moving_on: bool = False,
) -> Prepared:
    """Prepare a pod for ``request``; every ``AppRequest.image`` must be a full image ID.
    ``network``: the pod's networks as :func:`trustd.privileged.net.resolve` read them.
    ``moving_on``: the caller runs the pod at once (``rkt run``) and its measurement record's
    write fsyncs the pod directory, so ``info.json``'s entry is not fsynced here (ADR 0020
    addendum: the batched prepare)."""
    require_root()
    if not request.apps:
        raise UserError("must provide at least one image")
    if request.interactive and len(request.apps) > 1:
        raise UserError("interactive option only supports one image", hint="run one image")
    keys = [StoreKey.parse(req.image) for req in request.apps]
    accept = accept_unsigned_for(Insecure.IMAGE in request.insecure, policy)
    pod, lock = pods.new()
    try:
        with tree_lock(data, exclusive=False):
            apps, trees, volumes = [], [], list(request.volumes)
            for req, key in zip(request.apps, keys, strict=True):
                tree = render_tree(
                    data, key, keystore, accept_unsigned=accept, identity=identity_for(policy)
                )
                _check_requested(req, key, tree.manifest)
                stamp_used(data, key)
                trees.append(tree)
                planned = _plan_app(req, tree, key.id, request, policy)
                mounts, implicit = app_mounts(planned.name, tree.manifest, planned.mounts, volumes)
                volumes.extend(implicit)  # rkt's implicit empty volumes for mountPoints
                apps.append(replace(planned, mounts=mounts))
            if len({a.name for a in apps}) != len(apps):
                raise UserError("two apps have the same name", hint="give each one --name=NAME")
            net = resolve_ports(network or PodNetPlan(options=request.network), _ports(trees))
            if request.flavor == "fly":  # fly runs in the host's network namespace (rkt)
                net = PodNetPlan(options=NetOptions(net="host"))
            plan = PodPlan(
                uuid=pod.uuid,
                flavor=request.flavor,
                net=net_mode(net),
                hostname=request.hostname or f"rkt-{pod.uuid}",
                apps=tuple(apps),
                volumes=tuple(volumes),
                insecure=tuple(insecure_names(request.insecure)),
                masked_paths=Insecure.PATHS not in request.insecure,
                mds=request.mds_register,
                private_users=_private_users(request, pod.uuid, pods),
                interactive=request.interactive,
                ipc=request.ipc,
                overlay=request.overlay,
                network=net,
                **_selinux(_selinux_mode(policy, apps), pod, pods),
            )
            gated = gate_run(plan, trees, policy, keystore, data=data, measurement=measurement)
            write_plan(pod, plan, sync_dir=False)
        atomic_write(pod.private / MANIFEST, _pod_manifest(plan), mode=0o600, sync_dir=False)
        fsync_dir(pod.private)  # the plan's and the manifest's entries, one fsync
        atomic_write(pod.path / INFO, public_info(plan), mode=0o640, sync_dir=not moving_on)
        (pod.path / "pod-created").write_text(datetime.now(UTC).isoformat(timespec="seconds"))
        pod = pods.move(pod, "prepared")
    except TrustdError:
        from trustd.privileged.isolation.selinux import McsAllocator  # noqa: PLC0415

        McsAllocator(pods.root.parent).release(pod.uuid)
        release_private_users(pods, pod.uuid)
        pods.move(pod, "garbage")
        lock.close()
        raise
    return Prepared(pod, gated, lock)


def _ports(trees: list[RenderedTree]) -> list[tuple[str, str, int]]:
    return [
        (str(p.name), p.protocol, p.port)
        for t in trees
        if t.manifest.app is not None
        for p in t.manifest.app.ports or ()
    ]


def net_mode(net: PodNetPlan) -> Net:
    """The plan's ``net``: host, none, or default (the pod joins CNI networks)."""
    mode = net.options.mode
    return "default" if mode == "cni" else mode


def public_info(plan: PodPlan) -> bytes:
    """What ``rkt list``/``rkt status`` show group rkt: no env, no args, no volumes."""
    apps = [
        {"name": a.name, "image_key": a.image_key, "image_name": a.image_name} for a in plan.apps
    ]
    return json.dumps({"apps": apps}, indent=2).encode()


def write_plan(pod: Pod, plan: PodPlan, *, sync_dir: bool = True) -> None:
    """The plan holds the apps' environment (secrets): root-only, under private/.
    ``sync_dir=False``: the caller fsyncs private/ (:func:`atomic_write`)."""
    atomic_write(pod.check_private() / PLAN, plan.to_json().encode(), mode=0o600, sync_dir=sync_dir)


def load_plan(pod: Pod) -> PodPlan:
    return read_json(pod.check_private() / PLAN, PodPlan, hint="prepare the pod again")

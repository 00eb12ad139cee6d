"""run and run-prepared: move the prepared pod to ``run/`` under its lock and start stage1."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from trustd.privileged.executor._gate import GatedPod, gate_run
from trustd.privileged.executor._mdsreg import require_daemon
from trustd.privileged.executor._measure import MeasureConfig, measure_pod_start
from trustd.privileged.executor.plan import PodPlan
from trustd.privileged.executor.prepare import (
    Prepared,
    accept_unsigned_for,
    identity_for,
    load_plan,
    net_mode,
    require_root,
    write_plan,
)
from trustd.privileged.executor.stage1 import run_pod
from trustd.privileged.net import Attaching, PodNetPlan
from trustd.privileged.pod import Pod, PodState, PodStore
from trustd.privileged.treestore.datadir import DataDir, stamp_used, tree_lock
from trustd.privileged.treestore.render import RenderedTree, render_tree
from trustd.shared._fsutil import fsync_dir
from trustd.shared.errors import UserError
from trustd.shared.imageid import StoreKey
from trustd.shared.keystore import Keystore
from trustd.shared.policy import Policy
from trustd.shared.request import Ipc
from trustd.shared.vocab import MeasureMode


def _stamp(pod: Pod, name: str) -> None:
    (pod.path / name).write_text(datetime.now(UTC).isoformat(timespec="seconds"))


def run_prepared_pod(
    prepared: Prepared, pods: PodStore, measure: MeasureConfig, policy: Policy
) -> int:
    """Measure, then run a pod this process prepared (it still holds the lock).

    A measurement that fails (in ``required`` mode) leaves the pod prepared and unrun.
    """
    network = Attaching(prepared.pod.uuid, prepared.gated.plan.network, pods.root)  # measuring
    try:
        measure_pod_start(prepared.gated, prepared.pod.path, pods.root.parent, measure, policy)
    except BaseException:
        network.abandon()
        # The pod stays prepared: its directory's entries (info.json's, which ``rkt run``'s
        # prepare left to the measurement record's write) are made durable here.
        fsync_dir(prepared.pod.path)
        prepared.lock.close()
        raise
    pod = pods.move(prepared.pod, "run")
    _stamp(pod, "pod-started")
    try:
        with network.ready(pod.path):
            return run_pod(pod.path, prepared.gated)
    finally:
        _stamp(pod, "pod-finished")
        prepared.lock.close()  # unlocked in run/ means exited


def with_network(plan: PodPlan, network: PodNetPlan | None, hostname: str | None) -> PodPlan:
    """run-prepared's --net/--dns*/--hosts-entry/--hostname over the prepared ones (the
    ports stay those prepared, as in rkt)."""
    if network is not None:
        network = replace(network, ports=plan.network.ports)
        if network.ports and network.options.mode != "cni":
            raise UserError("the pod was prepared with --port, which needs a CNI network (--net)")
        plan = replace(plan, network=network, net=net_mode(network))
    return replace(plan, hostname=hostname) if hostname else plan


def recheck(plan: PodPlan, data: DataDir, keystore: Keystore, policy: Policy) -> list[RenderedTree]:
    """Before a prepared pod runs, every image's signers must still be trusted now (or the
    policy in force must still accept it unsigned); each image's last use is stamped."""
    accept = accept_unsigned_for("image" in plan.insecure, policy)
    trees = []
    with tree_lock(data, exclusive=False):
        for app in plan.apps:
            key = StoreKey.parse(app.image_key)
            trees.append(
                render_tree(
                    data, key, keystore, accept_unsigned=accept, identity=identity_for(policy)
                )
            )
            stamp_used(data, key)
    return trees


def regate(
    plan: PodPlan, data: DataDir, keystore: Keystore, policy: Policy, *, measurement: MeasureMode
) -> GatedPod:
    """A recorded plan, its images re-verified now and decided by the policy now."""
    trees = recheck(plan, data, keystore, policy)  # opt-outs stay those recorded at prepare
    return gate_run(plan, trees, policy, keystore, data=data, measurement=measurement)


def run_prepared(
    uuid: str,
    data: DataDir,
    keystore: Keystore,
    pods: PodStore,
    *,
    measure: MeasureConfig,
    policy: Policy,
    mds_register: bool = False,
    interactive: bool = False,
    network: PodNetPlan | None = None,
    hostname: str | None = None,
    ipc: Ipc | None = None,
) -> int:
    """``rkt run-prepared UUID``; ``--mds-register`` and ``--interactive`` apply now;
    ``network``/``hostname``/``ipc`` replace the prepared ones (``ipc`` is recorded only
    once the policy in force allowed it, so a refusal leaves the pod as prepared)."""
    require_root()
    pod = pods.find(uuid)
    if pod.state(by_root=True) is not PodState.PREPARED:
        raise UserError(f'pod "{pod.uuid}" is not prepared (it is {pod.state(by_root=True)})')
    lock = pod.lock()
    plan = load_plan(pod)
    if interactive and len(plan.apps) > 1:
        lock.close()
        raise UserError("interactive option only supports one image", hint="run one image")
    if mds_register or plan.mds:  # rkt's check before the pod moves to run (nothing changed:
        try:  # start the daemon, then run-prepared again)
            net = plan.net if network is None else net_mode(network)
            require_daemon(pods.root.parent, "host" if plan.flavor == "fly" else net)
        except BaseException:
            lock.close()
            raise
    if (mds_register and not plan.mds) or (interactive and not plan.interactive):
        plan = replace(
            plan, mds=plan.mds or mds_register, interactive=plan.interactive or interactive
        )
        write_plan(pod, plan)
    if network is not None or hostname is not None:
        plan = with_network(plan, network, hostname)
        write_plan(pod, plan)
    recorded = plan
    if ipc is not None:
        plan = replace(plan, ipc=ipc)
    try:
        gated = regate(plan, data, keystore, policy, measurement=measure.mode)
    except BaseException:
        lock.close()
        raise
    if plan != recorded:
        write_plan(pod, plan)
    return run_prepared_pod(Prepared(pod, gated, lock), pods, measure, policy)

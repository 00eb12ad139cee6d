"""``rkt enter``: a new process inside a running app, confined exactly like the app.

rkt's enter (CVE-2019-10144/10145/10147) joined the namespaces but kept every capability,
no seccomp filter and no cgroup limits. Here the entered process joins the app's IPC, UTS,
network, PID and mount namespaces and its cgroups, then takes the app's user, capability
set, no_new_privs and seccomp filter from the pod's plan before exec (ADR 0006).
"""

from __future__ import annotations

import os
import sys

from trustd.privileged.executor import _linux as lx
from trustd.privileged.executor import _procs, _userns
from trustd.privileged.executor._gate import GatedPod
from trustd.privileged.executor._isolate import apply_app_isolation, join_app_cgroups, preload
from trustd.privileged.executor._supervise import EXIT_STAGE1, reset_for_exec
from trustd.privileged.executor.plan import DEFAULT_PATH, AppPlan, PodPlan
from trustd.privileged.executor.prepare import load_plan, require_root
from trustd.privileged.executor.run import regate
from trustd.privileged.pod import Pod, PodState
from trustd.privileged.treestore.datadir import DataDir
from trustd.shared.errors import UserError
from trustd.shared.isolation import set_undumpable
from trustd.shared.keystore import Keystore
from trustd.shared.policy import Policy
from trustd.shared.vocab import MeasureMode

NAMESPACES = ("ipc", "uts", "net", "pid", "mnt")


def _app(plan: PodPlan, name: str | None) -> AppPlan:
    """rkt's choice (stage0 enter.go getAppName): ``--app=NAME``, else the only app; with
    several, the list on stderr and rkt's error."""
    if name is None:
        if len(plan.apps) > 1:
            print("pod contains multiple apps:", file=sys.stderr)
            for app in plan.apps:
                print(f"\t{app.name}", file=sys.stderr)
            raise UserError(
                'unable to determine app name: specify app using "rkt enter --app= ..."'
            )
        return plan.apps[0]
    for app in plan.apps:
        if app.name == name:
            return app
    raise UserError(
        f"app {name} is not present in pod",
        hint="apps: " + ", ".join(a.name for a in plan.apps),
    )


def _app_namespaces(pod: Pod, plan: PodPlan, app: AppPlan) -> list[int]:
    """The app's namespace fds, opened only while its process is pinned: a process that
    reused the PID of an exited app is never joined (_procs)."""
    pinned = _procs.pin_running(pod.path / "apps" / app.name, app.name, pod.uuid)
    try:
        names = NAMESPACES + (("user",) if plan.private_users is not None else ())
        fds = [os.open(f"/proc/{pinned.pid}/ns/{ns}", os.O_RDONLY) for ns in names]
        if not _procs.still_pinned(pinned):
            for fd in fds:
                os.close(fd)
            raise UserError(f"app {app.name!r} of pod {pod.uuid} is not running")
        return fds
    finally:
        pinned.close()


def _join_and_exec(fds: list[int], plan: PodPlan, app: AppPlan, command: list[str]) -> None:
    set_undumpable()  # the app sees this helper (same PID namespace, same uid 0)
    preload()
    join_app_cgroups(plan, app, os.getpid())
    userns = fds.pop() if plan.private_users is not None else None
    for fd in fds:
        lx.setns(fd)
        os.close(fd)
    if userns is not None:  # last: joining it gives up the host's rights over the others
        _userns.enter(userns)
    child = os.fork()  # the PID namespace applies to children only
    if child == 0:
        env = {"PATH": DEFAULT_PATH, "AC_APP_NAME": app.name, **dict(app.env)}
        os.chdir(app.working_dir or "/")
        reset_for_exec()  # SIGPIPE and SIGXFSZ at their defaults, as in the app
        apply_app_isolation(plan, app)  # first: nothing rkt enter inherited reaches the app
        os.execvpe(command[0], command, env)  # noqa: S606 - no shell, by design
    _, status = os.waitpid(child, 0)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def gate_for_enter(
    pod: Pod,
    data: DataDir,
    keystore: Keystore,
    policy: Policy,
    *,
    measurement: MeasureMode,
) -> GatedPod:
    """The running pod's plan, its images re-verified and decided by the policy now: what
    enter applies is what the gate admits today, not only what it admitted at start."""
    require_root()
    if pod.state(by_root=True) is not PodState.RUNNING:
        raise UserError(f'pod "{pod.uuid}" is not running (it is {pod.state(by_root=True)})')
    return regate(load_plan(pod), data, keystore, policy, measurement=measurement)


def enter(pod: Pod, gated: GatedPod, app_name: str | None, command: list[str]) -> int:
    """Enter ``app_name`` of ``pod``, confined as the gated plan says (see gate_for_enter)."""
    require_root()
    if not isinstance(gated, GatedPod) or gated.plan.uuid != pod.uuid:
        raise TypeError("enter takes the run gate's GatedPod for this pod")
    if pod.state(by_root=True) is not PodState.RUNNING:
        raise UserError(f'pod "{pod.uuid}" is not running (it is {pod.state(by_root=True)})')
    plan = gated.plan
    app = _app(plan, app_name)
    fds = _app_namespaces(pod, plan, app)
    if not command:
        print('enter: no command specified, assuming "/bin/sh"', file=sys.stderr)
        command = ["/bin/sh"]
    sys.stdout.flush()
    sys.stderr.flush()
    helper = os.fork()
    if helper == 0:  # pragma: no cover - measured by the integration tests
        try:
            _join_and_exec(fds, plan, app, command)
        except BaseException as exc:  # noqa: BLE001
            print(f"enter: {exc}", file=sys.stderr)
        os._exit(EXIT_STAGE1)
    for fd in fds:
        os.close(fd)
    _, status = os.waitpid(helper, 0)
    return os.waitstatus_to_exitcode(status) & 0xFF

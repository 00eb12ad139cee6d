"""The stage1: the pod's first process, run as a fork of ``rkt`` (no separate binary).

container: new mount, PID, UTS, IPC (and, unless ``--net=host``, network) namespaces; the
pod's init (PID 1, still seeing the host filesystem) builds each app's root under
``<pod>/private/stage1/rootfs/opt/stage2/<app>/rootfs``, then forks the apps; each app takes its own
mount namespace, pivot_root()s into its root, applies user, capabilities, no_new_privs and
seccomp, and execs. Init reaps everything and records each app's exit status.

fly: host namespaces except a private mount namespace for the overlay; the app is
chroot()ed into its root with no isolators, as rkt's fly did (for trusted system tools).

Everything app-written (overlay upper dirs, empty volumes) lives under the pod's root-only
``private/`` dir; mount targets are resolved inside the app's rootfs (RESOLVE_IN_ROOT); every
stage1 process is non-dumpable; every fd above 2 is close-on-exec before an app's exec; the
metadata service is the host daemon, ``rkt metadata-service`` (ADR 0025).
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import socket
import struct
import sys
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from trustd.privileged import _dirfd
from trustd.privileged.executor import _linux as lx
from trustd.privileged.executor import _procs, _rootfs, _userns
from trustd.privileged.executor._gate import GatedPod
from trustd.privileged.executor._isolate import PodGroups, apply_app_isolation, pod_cgroups, preload
from trustd.privileged.executor._relay import Pipes, Relay
from trustd.privileged.executor._supervise import (
    EXIT_STAGE1,
    INIT_DIR,
    Supervisor,
    block_forwarded,
    forward_to,
    reset_for_exec,
    status_code,
)
from trustd.privileged.executor.plan import DEFAULT_PATH, AppPlan, PodPlan
from trustd.privileged.isolation.selinux import label_tree
from trustd.privileged.net import install_etc
from trustd.privileged.net import join as join_netns
from trustd.privileged.pod.lifecycle import PRIVATE
from trustd.shared._fsutil import atomic_write
from trustd.shared.errors import UserError
from trustd.shared.isolation import set_undumpable

_VOLUME_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def _lo_up() -> None:
    """ifconfig lo up, without iproute2 (SIOCGIFFLAGS / SIOCSIFFLAGS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(s, 0x8913, req))[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sh", b"lo", flags | 0x1))


def _private(pod_dir: Path) -> Path:
    return pod_dir / PRIVATE


def _app_root(pod_dir: Path, app: AppPlan) -> Path:
    return _private(pod_dir) / "stage1" / "rootfs" / "opt" / "stage2" / app.name / "rootfs"


def _volume_source(pod_dir: Path, plan: PodPlan, name: str) -> tuple[str, bool]:
    if not _VOLUME_NAME.fullmatch(name):
        raise OSError(f"volume name {name!r} is not an appc ACName (a-z, 0-9 and dashes)")
    for vol in plan.volumes:
        if vol.name == name:
            if vol.kind == "host" and vol.source:
                return vol.source, vol.readonly
            empty = _private(pod_dir) / "volumes" / name
            empty.mkdir(parents=True, exist_ok=True)
            if plan.private_users is not None:  # the pod's root owns its empty volumes
                os.chown(empty, plan.private_users, plan.private_users)
            return str(empty), vol.readonly
    raise OSError(f"app mounts volume {name!r}, which the pod does not define")


def _bind_in_root(source: str, root: Path, target: str, *, readonly: bool) -> None:
    """Bind ``source`` (opened from ``/`` with no link another user made: red team 5) onto
    ``target`` resolved inside ``root`` (an absolute symlink in the image stays inside it),
    both through /proc/self/fd/N of the opened files."""
    src = _dirfd.open_host_path(source)
    try:
        rootfd = _dirfd.open_root(root)
        try:
            fd = _dirfd.makedirs_in_root(rootfd, target)
            try:
                lx.mount(_dirfd.fd_path(src), _dirfd.fd_path(fd), None, lx.MS_BIND | lx.MS_REC)
            finally:
                os.close(fd)
            if readonly:  # the new mount, reached again from the root: remount it read-only
                fd = _dirfd.open_in_root(rootfd, target, _dirfd.O_PATH | os.O_DIRECTORY)
                try:
                    flags = lx.MS_BIND | lx.MS_REMOUNT | lx.MS_RDONLY | lx.MS_NOSUID | lx.MS_NODEV
                    lx.mount(None, _dirfd.fd_path(fd), None, flags)
                finally:
                    os.close(fd)
        finally:
            os.close(rootfd)
    finally:
        os.close(src)


def _build_root(pod_dir: Path, plan: PodPlan, app: AppPlan) -> Path:
    root = _app_root(pod_dir, app)
    layer = _private(pod_dir) / "overlay" / app.name
    (layer / "upper").mkdir(parents=True, exist_ok=True)
    if plan.selinux_file:  # what the app writes lands in its upper layer: label it
        label_tree(layer / "upper", plan.selinux_file)
    if plan.overlay:
        lower = app.rootfs
        if plan.private_users is not None:  # the image seen through the pod's uid map (no chown)
            lower = _userns.map_lower(app.rootfs, layer, _USERNS[0], plan.private_users)
        _rootfs.overlay(lower, layer / "upper", layer / "work", root, readonly=False)
    else:  # --no-overlay: a private copy of the tree, as rkt copies it
        _rootfs.private_copy(app.rootfs, layer / "rootfs", root)
    install_etc(_private(pod_dir), root)  # resolv.conf, hosts: before any mount inside
    if plan.flavor == "fly":
        for path in ("proc", "sys", "dev"):
            _bind_in_root(f"/{path}", root, path, readonly=False)
    else:
        _rootfs.kernel_filesystems(root)
        if plan.masked_paths:
            _rootfs.protect_paths(root)
    for m in app.mounts:
        source, readonly = _volume_source(pod_dir, plan, m.volume)
        _bind_in_root(source, root, m.target, readonly=readonly or m.readonly)
    if app.readonly_rootfs:
        _rootfs.remount_readonly(root)
    return root


def _enter_root(root: Path, plan: PodPlan) -> None:
    if plan.flavor == "fly":
        os.chroot(root)
    else:
        lx.unshare(lx.CLONE_NEWNS)
        os.chdir(root)
        lx.pivot_root(".", ".")  # stack the old root under the new one, then drop it
        lx.umount(".", lx.MNT_DETACH)
    os.chdir("/")


_POD_ENV: dict[str, str] = {}  # set by the pod's init before it forks the apps
_USERNS: list[int] = []  # --private-users: an fd on the pod's user namespace


def _join_userns() -> None:
    """--private-users: into the pod's user namespace, as its root, once the root is
    pivoted (the mounts stay owned by the host's namespace: the pod cannot change them)."""
    if _USERNS:
        _userns.enter(_USERNS[0])


def _app_env(app: AppPlan) -> dict[str, str]:
    return {"PATH": DEFAULT_PATH, "AC_APP_NAME": app.name, **_POD_ENV, **dict(app.env)}


_MDS_DAEMON: list[Path] = []  # the host daemon's registration socket, once registered


def _start_mds(pod_dir: Path, plan: PodPlan) -> None:
    """Register the pod with the host's metadata service (rkt metadata-service, _mdsreg);
    the apps get its ``AC_METADATA_URL``. No daemon, or one the pod cannot reach, stops
    the pod before any app starts (rkt's error; root checked for a daemon before)."""
    from trustd.privileged.executor import _mdsreg  # noqa: PLC0415

    where = _mdsreg.pod_address(plan)
    if where is None:
        raise UserError(_mdsreg.NO_NETWORK)
    daemon = _mdsreg.require_daemon(pod_dir.parents[2], plan.net, probe=False)
    _POD_ENV["AC_METADATA_URL"] = _mdsreg.register(daemon, plan, _private(pod_dir), where)
    _MDS_DAEMON.append(daemon)


def _stop_mds(plan: PodPlan) -> None:
    if _MDS_DAEMON:
        from trustd.privileged.executor._mdsreg import unregister  # noqa: PLC0415

        unregister(_MDS_DAEMON[0], plan.uuid)


def _as_root(app: AppPlan) -> AppPlan:
    """The app's confinement for its event handlers: uid and gid 0, as rkt ran them, and
    nothing more -- the app's own capability set, no_new_privs, seccomp filter, cgroup and
    namespaces (the handler is a child of the app's confined process or of init's)."""
    return replace(app, uid=0, gid=0)


def _run_handlers(plan: PodPlan, app: AppPlan, which: str) -> None:
    """appc event handlers, in order, each in a fresh process in the app's root with the
    app's isolation as root; one failing stops."""
    handlers = app.pre_start if which == "pre-start" else app.post_stop
    for argv in handlers:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - measured by the integration tests
            try:
                apply_app_isolation(plan, _as_root(app))  # fds above 2 close-on-exec first
                os.execvpe(argv[0], list(argv), _app_env(app))  # noqa: S606 - no shell
            except BaseException as exc:  # noqa: BLE001 - report, never return
                print(f"run: {which} handler {argv[0]!r}: {exc}", file=sys.stderr)
            finally:
                os._exit(127)
        _, status = os.waitpid(pid, 0)
        if status_code(status) != 0:
            raise OSError(f"{which} handler {argv[0]!r} exited with {status_code(status)}")


def _exec_app(pod_dir: Path, plan: PodPlan, app: AppPlan, root: Path) -> None:
    apps_dir = pod_dir / "apps" / app.name
    apps_dir.mkdir(parents=True, exist_ok=True)
    _procs.record_self(apps_dir)  # host PID and start time, for enter and stop
    _enter_root(root, plan)
    _join_userns()
    os.chdir(app.working_dir or "/")
    _run_handlers(plan, app, "pre-start")
    apply_app_isolation(plan, app)  # fds, user, capabilities, no_new_privs, seccomp: last
    os.execvpe(app.exec[0], list(app.exec), _app_env(app))  # noqa: S606 - no shell, by design


def _in_child(plan: PodPlan, pipes: Pipes | None) -> None:
    """First thing in a forked app or post-stop process: its own stdio pipes and session
    (signals reach it only through init, as in rkt, where each app was a systemd service),
    and the signal state an exec'd program expects."""
    signal.set_wakeup_fd(-1)
    reset_for_exec()
    if pipes is not None:
        pipes.in_child()
    if not plan.interactive:
        os.setsid()


def _post_stop(plan: PodPlan, app: AppPlan, root: Path, relay: Relay | None) -> int | None:
    """post-stop handlers run after the app exited, in a fresh process in the same root;
    its pid (init reaps it), or None when the app has none."""
    if not app.post_stop:
        return None
    pipes = relay.pipes() if relay else None
    pid = os.fork()
    if pid == 0:  # pragma: no cover - measured by the integration tests
        code = 0
        try:
            _in_child(plan, pipes)
            _enter_root(root, plan)
            _join_userns()
            _run_handlers(plan, app, "post-stop")
        except BaseException as exc:  # noqa: BLE001
            print(f"run: app {app.name!r}: {exc}", file=sys.stderr)
            code = EXIT_STAGE1
        os._exit(code)
    if relay is not None and pipes is not None:
        relay.attach(pipes, app.name, pid)
    return pid


def _wait_for_cgroup(fd: int) -> None:
    placed = os.read(fd, 1) == b"1"
    os.close(fd)
    if not placed:
        raise OSError("the pod's init did not place the app in its cgroup")


def _start_app(
    pod_dir: Path,
    plan: PodPlan,
    app: AppPlan,
    root: Path,
    groups: PodGroups,
    *,
    relay: Relay | None,
) -> int:
    """Fork the app; it waits until init has put it into its cgroup, so no instruction of
    the app ever runs outside its limits."""
    pipes = relay.pipes() if relay else None
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - measured by the integration tests
        try:
            _in_child(plan, pipes)
            os.close(ready_w)
            _wait_for_cgroup(ready_r)
            _exec_app(pod_dir, plan, app, root)
        except BaseException as exc:  # noqa: BLE001 - report, never return into init
            print(f"run: app {app.name!r} could not start: {exc}", file=sys.stderr)
        os._exit(EXIT_STAGE1)
    os.close(ready_r)
    if relay is not None and pipes is not None:
        relay.attach(pipes, app.name, pid)  # the pid as the pod sees it, as rkt showed it
    try:
        groups.add(app, pid)
        os.write(ready_w, b"1")
    finally:
        os.close(ready_w)
    return pid


def _record_exit(pod_dir: Path, name: str, code: int) -> None:
    """``apps/<name>/exit``: what ``rkt status`` shows as ``app-<name>=<code>`` (also for an
    app that failed before it made its directory)."""
    (pod_dir / "apps" / name).mkdir(parents=True, exist_ok=True)
    atomic_write(pod_dir / "apps" / name / _procs.EXIT_FILE, str(code).encode(), mode=0o644)


def _pod_init(pod_dir: Path, plan: PodPlan) -> int:
    set_undumpable()  # an app (root in its pod) must not open /proc/1/{exe,environ,mem}
    preload()
    lx.mount(None, "/", None, lx.MS_REC | lx.MS_PRIVATE)
    if plan.flavor == "container":
        lx.sethostname(plan.hostname)
        if plan.net != "host":
            _lo_up()
    if plan.mds:
        _start_mds(pod_dir, plan)
    stage = _private(pod_dir) / "stage1" / "rootfs"
    stage.mkdir(parents=True, exist_ok=True)
    lx.mount("tmpfs", str(stage), "tmpfs", 0, "mode=755")
    roots = {app.name: _build_root(pod_dir, plan, app) for app in plan.apps}
    groups = pod_cgroups(plan)
    by_name = {app.name: app for app in plan.apps}
    relay = None if plan.interactive or plan.flavor == "fly" else Relay()

    def on_exit(name: str, code: int) -> None:
        _record_exit(pod_dir, name, code)
        helper = _post_stop(plan, by_name[name], roots[name], relay)
        if helper is not None:
            supervisor.add_helper(helper, name)

    supervisor = Supervisor(relay, on_exit, forward_sigint=not plan.interactive)
    supervisor.install()
    init_dir = _private(pod_dir) / INIT_DIR
    init_dir.mkdir(mode=0o700, exist_ok=True)
    _procs.record_self(init_dir)  # rkt stop signals it (never a reused pid: _procs.pin)
    for app in plan.apps:
        pid = _start_app(pod_dir, plan, app, roots[app.name], groups, relay=relay)
        supervisor.add_app(pid, app.name)
    supervisor.run()
    _stop_mds(plan)
    groups.record_oom(pod_dir)
    groups.destroy()
    return supervisor.exit_code()


def _child(pod_dir: Path, plan: PodPlan) -> int:
    set_undumpable()
    if not plan.interactive:  # out of the terminal's process group: rkt forwards ^C once
        os.setsid()
    if plan.flavor == "fly":
        lx.unshare(lx.CLONE_NEWNS)
        return _pod_init(pod_dir, plan)
    flags = lx.CLONE_NEWNS | lx.CLONE_NEWUTS | lx.CLONE_NEWPID
    if plan.ipc != "parent":  # --ipc=parent: the host's IPC namespace (the gate saw it)
        flags |= lx.CLONE_NEWIPC
    if plan.network.options.mode == "cni":
        join_netns(plan.uuid)  # the one root made and put on the pod's CNI networks
    elif plan.net != "host":
        flags |= lx.CLONE_NEWNET
    if plan.private_users is not None:  # made here, in the host PID namespace
        _USERNS.append(_userns.make_userns(plan.private_users))
    lx.unshare(flags)
    # the first child in a new PID namespace is its PID 1
    return _forked(lambda: _pod_init(pod_dir, plan))


def _forked(body: Callable[[], int]) -> int:
    """Run ``body`` in a forked child (a failure there is one line, and the traceback with
    TRUSTD_DEBUG; the child exits with ``body``'s code, 254 if it raised), forward the
    signals to it and return its status as an exit code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - measured by the integration tests
        code = EXIT_STAGE1
        try:
            code = body()
        except BaseException as exc:  # noqa: BLE001
            print(f"run: stage1: {exc}", file=sys.stderr)
            if os.environ.get("TRUSTD_DEBUG"):
                traceback.print_exc()
        os._exit(code)
    reaped = forward_to(pid)
    _, status = os.waitpid(pid, 0)
    reaped()
    return status_code(status)


def run_pod(pod_dir: Path, gated: GatedPod) -> int:
    """Run the pod the run gate admitted to completion: 0 when every app exited 0, else the
    status of the first app that failed (rkt's rule, see _supervise); 254 for our failures.
    SIGTERM, SIGINT and SIGHUP sent to this process reach the apps."""
    if not isinstance(gated, GatedPod):
        raise TypeError("run_pod takes the run gate's GatedPod")
    plan = gated.plan
    sys.stdout.flush()
    sys.stderr.flush()
    block_forwarded()
    return _forked(lambda: _child(pod_dir, plan))

"""The pod init's supervision: reap, relay output, forward signals, and rkt's exit rule.

rkt's stage1 (systemd in the pod; stage1/reaper/reaper.sh) recorded each app's exit status
when it exited; the first app that exited non-zero ended the pod (``systemctl exit STATUS``):
the other apps were stopped, and ``rkt run`` exited with that status. When every app exits 0,
the pod exits 0 (tests/rkt_exit_test.go: apps exiting 0, 5 and 6-later give 5, and the app
stopped meanwhile is recorded 0).

Signals: SIGTERM, SIGINT and SIGHUP reaching ``rkt run`` are forwarded down to the pod's init,
which sends them to every running app. SIGTERM and SIGINT also stop the pod, as systemd's
shutdown did: apps still running after :data:`STOP_GRACE` seconds get SIGKILL. An app that
dies of the SIGTERM or SIGINT the stage1 sent it is recorded 0, a clean stop, as systemd
counted it (rkt's ``status=0`` for the stopped app); any other status is recorded as it is.

The loop never blocks in ``wait``: SIGCHLD and the forwarded signals wake a ``select`` on the
apps' output pipes through :func:`signal.set_wakeup_fd`, so output keeps flowing while it waits.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from trustd.privileged.executor._relay import Relay

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STOPPING = (signal.SIGTERM, signal.SIGINT)
STOP_GRACE = 10.0
EXIT_STAGE1 = 254
INIT_DIR = "init"  # <pod>/private/init/{pid,starttime}: the pod's init, for rkt stop


def status_code(status: int) -> int:
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def block_forwarded() -> None:
    """Before a fork: the child starts with the forwarded signals blocked, so none lands
    before it has its own handler (a SIGTERM then would kill it and orphan the pod)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)


def unblock_forwarded() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)


def forward_to(pid: int) -> Callable[[], None]:
    """In rkt's process and the stage1's: pass every forwarded signal to ``pid``, then
    unblock them (they were blocked across the fork that made ``pid``). Call the returned
    function once ``pid`` is reaped: later signals are then absorbed, never sent to whoever
    reuses the pid, so the pod's state is still written out."""
    alive = [True]

    def handler(signum: int, _frame: FrameType | None) -> None:
        if alive[0]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    for sig in FORWARDED:
        signal.signal(sig, handler)
    unblock_forwarded()
    return lambda: alive.__setitem__(0, False)


def reset_for_exec() -> None:
    """In an app's process before exec: default dispositions (Python ignores SIGPIPE and
    SIGXFSZ, which exec would keep) and nothing blocked."""
    for sig in (*FORWARDED, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())


@dataclass(slots=True)
class Supervisor:
    """What the pod's init watches. ``on_exit(name, code)`` runs when an app's main process
    is reaped and may start its post-stop handler (:meth:`add_helper`)."""

    relay: Relay | None
    on_exit: Callable[[str, int], None]
    forward_sigint: bool = True  # False when --interactive: the terminal's ^C reached it
    apps: dict[int, str] = field(default_factory=dict)  # running main pids
    helpers: dict[int, str] = field(default_factory=dict)  # post-stop handlers
    codes: dict[str, int] = field(default_factory=dict)
    failure: int | None = None
    stop_sent: set[str] = field(default_factory=set)
    deadline: float | None = None
    _pending: list[int] = field(default_factory=list)
    _wake: int = -1

    def install(self) -> None:
        """Handlers and the wakeup pipe; then the signals blocked across the fork arrive."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self._wake = wake_r
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda _s, _f: None)
        for sig in FORWARDED:
            signal.signal(sig, lambda s, _f: self._pending.append(s))
        unblock_forwarded()

    def add_app(self, pid: int, name: str) -> None:
        self.apps[pid] = name

    def add_helper(self, pid: int, name: str) -> None:
        self.helpers[pid] = name

    def exit_code(self) -> int:
        return 0 if self.failure is None else self.failure

    def run(self) -> None:
        """Until every app and post-stop handler has been reaped."""
        while self.apps or self.helpers:
            self._wait_for_events()
            self._forward()
            self._reap()
            if self.deadline is not None and time.monotonic() >= self.deadline:
                self._kill_remaining()
        if self.relay is not None:
            self.relay.drain()

    def _wait_for_events(self) -> None:
        fds = [self._wake, *(self.relay.fds() if self.relay else ())]
        timeout = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
        ready, _, _ = select.select(fds, [], [], timeout)
        for fd in ready:
            if fd == self._wake:
                with contextlib.suppress(BlockingIOError):
                    while os.read(fd, 512):
                        pass
            elif self.relay is not None:
                self.relay.readable(fd)

    def _forward(self) -> None:
        pending, self._pending[:] = list(self._pending), []
        for sig in pending:
            if sig == signal.SIGINT and not self.forward_sigint:
                continue
            self._signal_apps(sig)
            if sig in STOPPING:
                self._stopping()

    def _signal_apps(self, sig: int) -> None:
        for pid, name in self.apps.items():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if sig in STOPPING:
                self.stop_sent.add(name)

    def _stopping(self) -> None:
        if self.deadline is None:
            self.deadline = time.monotonic() + STOP_GRACE

    def _kill_remaining(self) -> None:
        for pid in list(self.apps) + list(self.helpers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.deadline = None

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.helpers:
                self.helpers.pop(pid)
            elif pid in self.apps:
                self._app_exited(self.apps.pop(pid), status)

    def _app_exited(self, name: str, status: int) -> None:
        code = status_code(status)
        stopped = os.WIFSIGNALED(status) and os.WTERMSIG(status) in STOPPING
        if stopped and name in self.stop_sent:
            code = 0  # a clean stop, as systemd counted it
        self.codes[name] = code
        if code != 0 and self.failure is None:
            self.failure = code  # the pod ends: stop the others (reaper.sh's systemctl exit)
            self._signal_apps(signal.SIGTERM)
            self._stopping()
        self.on_exit(name, code)

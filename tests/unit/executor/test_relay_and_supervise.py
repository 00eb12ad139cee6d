"""The pod init's output relay and supervision loop, with real pipes and real child processes
(no root, no namespaces: the same code the stage1 runs)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from trustd.privileged.executor import _supervise
from trustd.privileged.executor._relay import MAX_LINE, Relay
from trustd.privileged.executor._supervise import Supervisor


@pytest.fixture(autouse=True)
def _restore_signals() -> Iterator[None]:
    """Supervisor.install() sets handlers and a wakeup fd in this process: undo them."""
    saved = {s: signal.getsignal(s) for s in (*_supervise.FORWARDED, signal.SIGCHLD)}
    yield
    signal.set_wakeup_fd(-1)
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def _collect(tmp_path: Path) -> tuple[Relay, Path, Path, int, int]:
    out, err = tmp_path / "out", tmp_path / "err"
    out_fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o600)
    err_fd = os.open(err, os.O_WRONLY | os.O_CREAT, 0o600)
    return Relay(out_fd, err_fd), out, err, out_fd, err_fd


def _spawn(relay: Relay | None, name: str, body: bytes, code: int) -> tuple[int, str]:
    """A real child that writes ``body`` to stdout (and b"E" + newline to stderr) and exits."""
    pipes = relay.pipes() if relay else None
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            if pipes is not None:
                pipes.in_child()
            os.write(1, body)
            os.write(2, b"E\n")
        finally:
            os._exit(code)
    if relay is not None and pipes is not None:
        relay.attach(pipes, name, pid)
    return pid, name


def test_lines_are_prefixed_partial_lines_completed_and_bytes_kept(tmp_path: Path) -> None:
    relay, out, err, *fds = _collect(tmp_path)
    codes: dict[str, int] = {}
    sup = Supervisor(relay, codes.__setitem__)
    sup.install()
    long = b"x" * (MAX_LINE + 5)
    pid_a, _ = _spawn(relay, "a", b"one\n\xff\x00bin\nparti", 0)
    pid_b, _ = _spawn(relay, "b", long, 0)
    sup.add_app(pid_a, "a")
    sup.add_app(pid_b, "b")
    sup.run()
    for fd in fds:
        os.close(fd)
    lines = out.read_bytes().split(b"\n")
    assert lines[-1] == b""
    a = [ln for ln in lines if ln.startswith(b"a[")]
    assert a == [b"a[%d]: one" % pid_a, b"a[%d]: \xff\x00bin" % pid_a, b"a[%d]: parti" % pid_a]
    b = [ln for ln in lines if ln.startswith(b"b[")]
    assert b == [b"b[%d]: " % pid_b + b"x" * MAX_LINE, b"b[%d]: xxxxx" % pid_b]
    assert sorted(err.read_bytes().split(b"\n")) == sorted(
        [b"", b"a[%d]: E" % pid_a, b"b[%d]: E" % pid_b]
    )
    assert codes == {"a": 0, "b": 0} and sup.exit_code() == 0


def test_the_first_failing_app_gives_the_status_and_stops_the_others(tmp_path: Path) -> None:
    """rkt's rule: 0 and 5 and a long-running app give 5; the stopped app is recorded 0."""
    codes: dict[str, int] = {}
    sup = Supervisor(None, codes.__setitem__)
    sup.install()
    r, w = os.pipe()
    sleeper = os.fork()
    if sleeper == 0:  # pragma: no cover - the child
        _supervise.reset_for_exec()
        os.close(r)
        os.execv("/bin/sh", ["sh", "-c", "exec sleep 60"])  # noqa: S606 - no shell input
    os.close(w)
    for code in (0, 5):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.read(r, 1)  # after the sleeper exists
            os._exit(code)
        sup.add_app(pid, f"exit{code}")
    sup.add_app(sleeper, "sleeper")
    os.close(r)
    sup.run()
    assert sup.exit_code() == 5
    assert codes == {"exit0": 0, "exit5": 5, "sleeper": 0}


def test_a_forwarded_sigterm_reaches_the_app_which_chooses_its_status(tmp_path: Path) -> None:
    codes: dict[str, int] = {}
    sup = Supervisor(None, codes.__setitem__)
    sup.install()
    ready = tmp_path / "ready"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        _supervise.reset_for_exec()
        script = f"trap 'exit 9' TERM; touch {ready}; while :; do sleep 0.05; done"
        os.execv("/bin/sh", ["sh", "-c", script])  # noqa: S606 - a fixed script
    sup.add_app(pid, "app")
    for _ in range(3000):
        if ready.exists():
            break
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGTERM)  # as the stage1 forwards it to init
    sup.run()
    assert codes == {"app": 9} and sup.exit_code() == 9

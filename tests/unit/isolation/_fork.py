"""Run isolation for real in a forked child, try something there, and report what happened.

The child applies the isolation to itself (as the executor's child does right before exec),
runs a probe, and sends one JSON line back through a pipe: the probe's value, the errno it
failed with, or the domain error ``apply_*`` raised. A child killed by a signal (SIGSYS from
seccomp) reports nothing; the parent reads the signal from the wait status.
"""

from __future__ import annotations

import ctypes
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trustd.shared.errors import TrustdError

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000


@dataclass(frozen=True)
class Outcome:
    kind: str  # "ok" | "errno" | "error" | "signal" | "exit"
    value: object = None

    @property
    def errno(self) -> int | None:
        return self.value if self.kind == "errno" and isinstance(self.value, int) else None


def _report(fd: int, kind: str, value: object) -> None:
    os.write(fd, json.dumps({"kind": kind, "value": value}).encode() + b"\n")


def _child(fd: int, setup: Callable[[], object], probe: Callable[[], object]) -> None:
    try:
        setup()
        try:
            value = probe()
        except OSError as exc:
            _report(fd, "errno", exc.errno)
            return
    except TrustdError as exc:
        _report(fd, "error", f"{type(exc).__name__}: {exc}")
        return
    _report(fd, "ok", value)


def run_isolated(setup: Callable[[], object], probe: Callable[[], object]) -> Outcome:
    """Fork; in the child run ``setup`` then ``probe``; return what the child reported."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which never returns
        try:
            os.close(rfd)
            _child(wfd, setup, probe)
        except BaseException as exc:  # noqa: BLE001 - the child must always report and exit
            _report(wfd, "error", f"unexpected {type(exc).__name__}: {exc}")
        finally:
            os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if data:
        msg = json.loads(data)
        return Outcome(msg["kind"], msg["value"])
    if os.WIFSIGNALED(status):
        return Outcome("signal", os.WTERMSIG(status))
    return Outcome("exit", os.waitstatus_to_exitcode(status))


def run_exec(setup: Callable[[], object], argv: list[str]) -> Outcome:
    """Fork; in the child run ``setup`` then exec ``argv``; return how it ended."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            setup()
            os.execv(argv[0], argv)  # noqa: S606 - the point is to exec under isolation
        finally:
            os._exit(120)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return Outcome("signal", os.WTERMSIG(status))
    return Outcome("exit", os.waitstatus_to_exitcode(status))


def libc_call(name: str, *args: object) -> int:
    """Call a libc function; raise OSError with its errno on -1."""
    res = int(getattr(_libc, name)(*args))
    if res == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return res


def raw_syscall(nr: int, *args: int) -> int:
    """``syscall(2)`` by number, for calls glibc has no wrapper for (e.g. clone3)."""
    return libc_call("syscall", ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))


def unshare(flags: int) -> int:
    return libc_call("unshare", ctypes.c_int(flags))


def mount_tmpfs(target: Path) -> int:
    return libc_call("mount", b"none", str(target).encode(), b"tmpfs", ctypes.c_ulong(0), None)


def proc_status(*keys: str) -> dict[str, str]:
    """Selected fields of /proc/self/status."""
    out: dict[str, str] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in keys:
            out[key] = value.strip()
    return out

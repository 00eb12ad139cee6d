"""The embedded swtpm: started on demand, reused across runs, reachable by root alone.

Its state lives in ``<data-dir>/tpm/`` (0700 root): ``swtpm-state/`` (the TPM's NVRAM: owner
seed), the UNIX sockets ``swtpm.sock`` and ``swtpm.ctrl`` (0600), ``swtpm.json`` (the
supervisor's and swtpm's pids, how many times it was started), ``swtpmd.lock`` (held by the
supervisor while it runs) and ``swtpm.log``. No TCP port: a user who is not root cannot even
reach the socket (the directory is 0700). The supervisor (:mod:`._swtpmd`) runs detached from
the caller (own session, stdio on ``/dev/null``), one per directory, and stops swtpm when the
directory goes away or on :func:`stop` (``rkt attest stop-tpm``).
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import sys
import time
from collections.abc import Callable
from dataclasses import field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

from trustd.privileged._tpmsocket import connect_socket
from trustd.privileged.measure import _provision
from trustd.privileged.measure.errors import MeasurementError
from trustd.shared._dataclass import frozen
from trustd.shared._fsutil import atomic_write
from trustd.shared.codec import DecodeError, decode_doc, decode_json, encode
from trustd.shared.errors import LocalStateError

STATE_FILE: Final = "swtpm.json"
# Run as a script (stdlib only: the daemon loads neither trustd nor tpm2-pytss), never imported.
SUPERVISOR: Final = Path(__file__).with_name("_swtpmd.py")
LOCK: Final = "swtpmd.lock"  # as in _swtpmd
LOG: Final = "swtpm.log"
MAX_STATE: Final = 4096
_START_TIMEOUT: Final = 15.0
_STOP_TIMEOUT: Final = 10.0


def _range(low: int, high: int) -> Callable[[int], str | None]:
    def check(value: int) -> str | None:
        return None if low <= value <= high else f"must be an integer in {low}..{high}"

    return check


def _nonempty(value: str) -> str | None:
    return None if value else "must be a non-empty string"


@frozen
class SwtpmState:
    """What ``swtpm.json`` records about the running (or last) embedded swtpm."""

    pid: int = field(metadata={"check": _range(2, 2**22)})  # the supervisor
    swtpm_pid: int = field(metadata={"check": _range(2, 2**22)})
    starts: int = field(metadata={"check": _range(1, 2**31)})
    started_at: str = field(metadata={"check": _nonempty})

    def to_json(self) -> bytes:
        doc = {"version": 2, **encode(self)}
        return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"


@frozen
class _StateFile:
    """``swtpm.json`` as stored: the state and its format version."""

    version: Literal[2]
    pid: int
    swtpm_pid: int
    starts: int
    started_at: str


def parse_state(data: bytes, source: str = STATE_FILE) -> SwtpmState:
    """Strict parse of ``swtpm.json``; every defect is a DecodeError naming the field."""
    hint = f"stop the swtpm (rkt attest stop-tpm), then remove {source}"
    if len(data) > MAX_STATE:
        raise DecodeError(source, (), f"larger than {MAX_STATE} bytes", hint)
    stored = decode_json(data, _StateFile, source, hint)
    doc = {k: v for k, v in encode(stored).items() if k != "version"}
    return decode_doc(doc, SwtpmState, source, hint)


def load_state(tpm_dir: Path) -> SwtpmState | None:
    path = tpm_dir / STATE_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LocalStateError(
            f"{path}: {exc.strerror}", hint=f"stop the swtpm it names, then remove {path}"
        ) from exc
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_STATE + 1)
    return parse_state(data, str(path))


def legacy_state(tpm_dir: Path) -> dict[str, object] | None:
    """``swtpm.json`` when it is an older trustd's (version 1: a TCP swtpm), else None."""
    try:
        fd = os.open(tpm_dir / STATE_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        raw = f.read(MAX_STATE + 1)
    try:
        doc = json.loads(raw)
    except ValueError:
        return None  # not ours to judge here: load_state names the defect
    return doc if isinstance(doc, dict) and doc.get("version") == 1 else None


def retire_legacy(tpm_dir: Path) -> int:
    """Stop an older trustd's TCP swtpm (``swtpm.json`` version 1) and forget it.

    Returns how many times that one had been started (0 when there was none), so the epoch's
    ``swtpm_starts`` keeps counting. Left running it would keep the TPM on a TCP port any
    local user can open, and hold the state directory's lock.
    """
    doc = legacy_state(tpm_dir)
    if doc is None:
        return 0
    pid, starts = doc.get("pid"), doc.get("starts")
    if isinstance(pid, int) and not isinstance(pid, bool) and pid > 1:
        _kill_legacy(pid, tpm_dir)
    (tpm_dir / STATE_FILE).unlink()
    return starts if isinstance(starts, int) and not isinstance(starts, bool) else 0


def _kill_legacy(pid: int, tpm_dir: Path) -> None:
    def ours() -> bool:
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            return False
        state_arg = f"dir={tpm_dir / 'swtpm-state'}".encode()
        alive = status not in {"Z", "X"}
        return alive and args[0].endswith(b"swtpm") and any(a.startswith(state_arg) for a in args)

    if not ours():
        return
    os.kill(pid, 15)
    deadline = time.monotonic() + _STOP_TIMEOUT
    while ours() and time.monotonic() < deadline:
        time.sleep(0.02)
    if ours():
        os.kill(pid, 9)


def supervised(tpm_dir: Path) -> bool:
    """A supervisor holds ``swtpmd.lock``: an swtpm serves this directory (or is starting)."""
    try:
        fd = os.open(tpm_dir / LOCK, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def answers(tpm_dir: Path) -> bool:
    try:
        connect_socket(tpm_dir).close()
    except (OSError, LocalStateError):
        return False
    return True


def is_alive(tpm_dir: Path) -> bool:
    return supervised(tpm_dir) and answers(tpm_dir)


def _is_supervisor(pid: int, tpm_dir: Path) -> bool:
    """``pid`` is a supervisor of ``tpm_dir`` (not a reused pid): a root process (no other user
    can make one, whatever its command line says) running a supervisor script, of this install
    or another one of trustd, for this directory."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    uids = next((line.split()[1:] for line in status.splitlines() if line.startswith("Uid:")), [])
    script = b"/" + SUPERVISOR.name.encode()
    return (
        uids == ["0", "0", "0", "0"]
        and any(a.endswith(script) for a in args)
        and str(tpm_dir).encode() in args
    )


def stop(tpm_dir: Path) -> bool:
    """Stop the embedded swtpm of ``tpm_dir``; True when one was running."""
    legacy = retire_legacy(tpm_dir) > 0
    if not supervised(tpm_dir):
        return legacy
    state = load_state(tpm_dir)
    if state is None or not _is_supervisor(state.pid, tpm_dir):
        raise LocalStateError(
            f"an swtpm supervisor holds {tpm_dir / LOCK} but {tpm_dir / STATE_FILE} "
            "does not name it",
            hint=f"find it: fuser {tpm_dir / LOCK}",
        )
    os.kill(state.pid, 15)
    deadline = time.monotonic() + _STOP_TIMEOUT
    while supervised(tpm_dir) and time.monotonic() < deadline:
        time.sleep(0.02)
    if supervised(tpm_dir) and _is_supervisor(state.pid, tpm_dir):
        os.kill(state.pid, 9)  # swtpm follows it (PR_SET_PDEATHSIG)
        while supervised(tpm_dir) and time.monotonic() < deadline + _STOP_TIMEOUT:
            time.sleep(0.02)
    return True


def _read_ready(fd: int) -> str:
    deadline = time.monotonic() + _START_TIMEOUT
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return f"error the supervisor did not answer within {_START_TIMEOUT:.0f}s"
        chunk = os.read(fd, 256)
        if not chunk:
            return "error the supervisor exited without a word"
        data += chunk
    return data.decode(errors="replace").strip()


def _spawn(tpm_dir: Path) -> tuple[int, int]:
    import subprocess  # noqa: PLC0415 - only to start swtpm: a running one needs none

    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        argv = [sys.executable, "-I", str(SUPERVISOR), str(tpm_dir), str(write_end)]
        first = subprocess.Popen(  # noqa: S603
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            pass_fds=(write_end,),
            start_new_session=True,
            cwd="/",
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"},
        )
        os.close(write_end)
        write_end = -1
        first.wait(timeout=_START_TIMEOUT)  # it forks the supervisor and exits
        word = _read_ready(read_end)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    parts = word.split()
    if len(parts) == 3 and parts[0] == "ready":
        return int(parts[1]), int(parts[2])
    raise OSError(word.removeprefix("error ").removeprefix("busy "))


def start(tpm_dir: Path, previous: SwtpmState | None, *, starts: int | None = None) -> SwtpmState:
    """Start a supervised swtpm and record it; the caller holds the lock."""
    import subprocess  # noqa: PLC0415 - only to start swtpm: a running one needs none

    if supervised(tpm_dir):
        stop(tpm_dir)
    if _provision.fresh(tpm_dir):  # first start: an EK certificate, as a vendor would
        _provision.provision(tpm_dir)
    try:
        pid, swtpm_pid = _spawn(tpm_dir)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MeasurementError(
            f"cannot start the embedded swtpm: {exc}",
            backend="swtpm",
            hint=f"see {tpm_dir / LOG}",
        ) from exc
    if starts is None:
        starts = 1 if previous is None else previous.starts + 1
    now = datetime.now(UTC).isoformat(timespec="seconds")
    state = SwtpmState(pid, swtpm_pid, starts, now)
    atomic_write(tpm_dir / STATE_FILE, state.to_json(), mode=0o600)
    return state

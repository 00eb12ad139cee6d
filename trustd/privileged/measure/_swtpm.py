"""The embedded swtpm: started on demand, reused across runs, restarted when dead.

Its state lives in ``<data-dir>/tpm/``: ``swtpm-state/`` (the TPM's NVRAM: owner seed, hence
the AK), ``swtpm.json`` (pid, ports, how many times it was started) and ``swtpm.pid``.
The swtpm TCTI talks to the control channel on server port + 1, so the two loopback ports are
consecutive; 2321/2322 belong to whatever TPM simulator the machine already runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

from trustd.privileged.measure.errors import MeasurementError
from trustd.shared._fsutil import atomic_write
from trustd.shared.codec import DecodeError, decode_doc, decode_json, encode
from trustd.shared.errors import LocalStateError

STATE_FILE: Final = "swtpm.json"
RESERVED_PORTS: Final = frozenset({2321, 2322})
MAX_STATE: Final = 4096
_START_TIMEOUT: Final = 5.0


def _range(low: int, high: int) -> Callable[[int], str | None]:
    def check(value: int) -> str | None:
        return None if low <= value <= high else f"must be an integer in {low}..{high}"

    return check


def _nonempty(value: str) -> str | None:
    return None if value else "must be a non-empty string"


@dataclass(frozen=True, slots=True)
class SwtpmState:
    """What ``swtpm.json`` records about the running (or last) embedded swtpm."""

    pid: int = field(metadata={"check": _range(2, 2**22)})
    server_port: int = field(metadata={"check": _range(1024, 65534)})
    ctrl_port: int = field(metadata={"check": _range(1025, 65535)})
    starts: int = field(metadata={"check": _range(1, 2**31)})
    started_at: str = field(metadata={"check": _nonempty})

    def __post_init__(self) -> None:
        pair = {self.server_port, self.ctrl_port}
        if self.ctrl_port != self.server_port + 1 or pair & RESERVED_PORTS:
            raise ValueError(
                f"ports {self.server_port}/{self.ctrl_port} are not a consecutive pair "
                "outside 2321/2322"
            )

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.server_port}"

    def to_json(self) -> bytes:
        doc = {"version": 1, **encode(self)}
        return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"


@dataclass(frozen=True, slots=True)
class _StateFile:
    """``swtpm.json`` as stored: the state and its format version."""

    version: Literal[1]
    pid: int
    server_port: int
    ctrl_port: int
    starts: int
    started_at: str


def parse_state(data: bytes, source: str = STATE_FILE) -> SwtpmState:
    """Strict parse of ``swtpm.json``; every defect is a DecodeError naming the field."""
    hint = f"stop the swtpm it names, then remove {source}"
    if len(data) > MAX_STATE:
        raise DecodeError(source, (), f"larger than {MAX_STATE} bytes", hint)
    stored = decode_json(data, _StateFile, source, hint)
    doc = {k: v for k, v in encode(stored).items() if k != "version"}
    return decode_doc(doc, SwtpmState, source, hint)


def load_state(tpm_dir: Path) -> SwtpmState | None:
    path = tpm_dir / STATE_FILE
    try:
        with path.open("rb") as f:
            data = f.read(MAX_STATE + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LocalStateError(
            f"{path}: {exc.strerror}", hint=f"stop the swtpm it names, then remove {path}"
        ) from exc
    return parse_state(data, str(path))


def is_ours(state: SwtpmState, tpm_dir: Path) -> bool:
    """The pid is a live swtpm serving our state directory (not a reused pid)."""
    return _pid_is_ours(state.pid, tpm_dir)


def _pid_is_ours(pid: int, tpm_dir: Path) -> bool:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    args = raw.split(b"\0")
    if status.rsplit(")", 1)[-1].split()[0] in {"Z", "X"}:
        return False
    state_arg = f"dir={tpm_dir / 'swtpm-state'}".encode()
    return bool(args) and args[0].endswith(b"swtpm") and any(a.startswith(state_arg) for a in args)


def answers(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def is_alive(state: SwtpmState, tpm_dir: Path) -> bool:
    return is_ours(state, tpm_dir) and answers(state.ctrl_port)


def free_port_pair() -> int:
    """A loopback port N with N+1 also free, neither 2321 nor 2322."""
    for _ in range(64):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            if port >= 65535 or {port, port + 1} & RESERVED_PORTS:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return int(port)
    raise MeasurementError("no free pair of loopback ports for the swtpm", backend="swtpm")


def stop(state: SwtpmState, tpm_dir: Path) -> bool:
    """Kill the swtpm ``state`` names if it is still ours; True when one was stopped."""
    if not is_ours(state, tpm_dir):
        return False
    os.kill(state.pid, 15)
    deadline = time.monotonic() + _START_TIMEOUT
    while is_ours(state, tpm_dir) and time.monotonic() < deadline:
        time.sleep(0.01)
    if is_ours(state, tpm_dir):
        os.kill(state.pid, 9)
    return True


def _spawn(tpm_dir: Path, port: int) -> int:
    binary = shutil.which("swtpm")
    if binary is None:
        raise MeasurementError(
            "the swtpm program is not installed", backend="swtpm", hint="run: make apt"
        )
    state_dir = tpm_dir / "swtpm-state"
    state_dir.mkdir(mode=0o700, exist_ok=True)
    pidfile = tpm_dir / "swtpm.pid"
    pidfile.unlink(missing_ok=True)
    argv = [binary, "socket", "--tpm2", "--tpmstate", f"dir={state_dir},mode=0600"]
    argv += ["--server", f"type=tcp,port={port},bindaddr=127.0.0.1"]
    argv += ["--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1"]
    argv += ["--flags", "not-need-init,startup-clear", "--daemon", "--pid", f"file={pidfile}"]
    argv += ["--log", f"file={tpm_dir / 'swtpm.log'}"]
    done = subprocess.run(argv, capture_output=True, timeout=_START_TIMEOUT, check=False)  # noqa: S603
    if done.returncode != 0:
        raise OSError(f"swtpm exited {done.returncode}: {done.stderr.decode(errors='replace')}")
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if pidfile.exists() and answers(port + 1) and answers(port):
            return int(pidfile.read_text().strip())
        time.sleep(0.01)
    with contextlib.suppress(OSError, ValueError):  # do not leave a half-started swtpm behind
        pid = int(pidfile.read_text().strip())
        if _pid_is_ours(pid, tpm_dir):
            os.kill(pid, 9)
    raise OSError(f"swtpm did not answer on 127.0.0.1:{port} within {_START_TIMEOUT:.0f}s")


def start(tpm_dir: Path, previous: SwtpmState | None) -> SwtpmState:
    """Start a new swtpm on fresh ports and record it; the caller holds the lock."""
    if previous is not None:
        stop(previous, tpm_dir)
    errors = []
    for _ in range(3):
        port = free_port_pair()
        try:
            pid = _spawn(tpm_dir, port)
        except (OSError, subprocess.TimeoutExpired) as exc:
            errors.append(str(exc).strip())
            continue
        starts = 1 if previous is None else previous.starts + 1
        now = datetime.now(UTC).isoformat(timespec="seconds")
        state = SwtpmState(pid, port, port + 1, starts, now)
        atomic_write(tpm_dir / STATE_FILE, state.to_json(), mode=0o600)
        return state
    raise MeasurementError(
        f"cannot start the embedded swtpm: {'; '.join(errors)}",
        backend="swtpm",
        hint=f"see {tpm_dir / 'swtpm.log'}",
    )

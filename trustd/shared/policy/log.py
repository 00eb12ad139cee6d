"""The decision log: append-only JSON lines, each hash-chained to the one before.

``<data-dir>/policy/decisions.jsonl`` is the fetch side's (group rkt appends to it);
``<data-dir>/private/decisions.jsonl`` is root's (run gates), written only through an fd
root opened without following symlinks, and its head is what a pod start measures. Every
line is a canonical JSON object whose ``prev`` is the sha256 (hex) of the previous line's
bytes (without its newline), ``GENESIS`` for the first, and ``seq`` counts from 0. Appends
hold an exclusive ``flock`` on the log, re-read the head under the lock (root's log: from its
last line alone, so a pod start does not walk the whole log), and write the whole line with one
``write(2)`` on an ``O_APPEND`` fd, then ``fsync``. :func:`verify_chain`
detects a rewritten, inserted or removed line; removing lines *at the end* leaves a valid
shorter chain, which is why :func:`chain_head` is what the TPM measurement records: a
verifier compares the measured head with the log's.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from trustd.shared._dataclass import frozen
from trustd.shared.errors import LocalStateError
from trustd.shared.policy.decide import Decision

GENESIS = "0" * 64
LOG_NAME = "decisions.jsonl"
MAX_LINE = 1 << 20


class DecisionLogError(LocalStateError):
    """The decision log is not an unbroken chain: it was edited, truncated or corrupted."""


def log_path(data_dir: Path) -> Path:
    return data_dir / "policy" / LOG_NAME


def _digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


@frozen
class ChainState:
    head: str  # sha256 of the last line, or GENESIS
    count: int


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise DecisionLogError(f"cannot read decision log {path}: {exc.strerror}") from exc


def _lines(data: bytes, where: str) -> Iterator[tuple[int, bytes]]:
    if data and not data.endswith(b"\n"):
        raise DecisionLogError(
            f"decision log {where}: the last line is incomplete",
            hint="a write was interrupted or the file was edited; keep it for investigation",
        )
    yield from enumerate(data.splitlines(), 1)


def _walk_bytes(data: bytes, path: str) -> ChainState:
    head, count = GENESIS, 0
    for number, line in _lines(data, path):
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DecisionLogError(f"decision log {path}:{number}: not JSON") from exc
        if not isinstance(record, dict):
            raise DecisionLogError(f"decision log {path}:{number}: not a JSON object")
        if record.get("prev") != head or record.get("seq") != count:
            raise DecisionLogError(
                f"decision log {path}:{number}: chain broken (expected prev {head[:16]}… "
                f"seq {count}, found prev {str(record.get('prev'))[:16]}… "
                f"seq {record.get('seq')})",
                hint="a line was rewritten, inserted or removed; keep the file for investigation",
            )
        head, count = _digest(line), count + 1
    return ChainState(head, count)


def _walk(path: Path) -> ChainState:
    return _walk_bytes(_read(path), str(path))


def verify_chain(path: Path, *, expected_head: str | None = None) -> str:
    """Check every link; return the head. With ``expected_head`` (e.g. the measured one),
    also detect lines removed from the end."""
    state = _walk(path)
    if expected_head is not None and state.head != expected_head:
        raise DecisionLogError(
            f"decision log {path}: head {state.head[:16]}… is not the expected "
            f"{expected_head[:16]}… ({state.count} lines)",
            hint="lines were removed from the end, or appended after the measurement",
        )
    return state.head


def chain_head(path: Path) -> str:
    """The head of a verified chain (GENESIS for an empty or missing log)."""
    return _walk(path).head


def _last_line(fd: int, where: str) -> bytes | None:
    """The log's last line (without its newline), read backwards from the end in blocks:
    O(length of that line), never the whole file. None for an empty log."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    if os.pread(fd, 1, size - 1) != b"\n":
        raise DecisionLogError(
            f"decision log {where}: the last line is incomplete",
            hint="a write was interrupted or the file was edited; keep it for investigation",
        )
    end, start, data = size - 1, size - 1, b""
    while start > 0 and b"\n" not in data:
        if end - start > MAX_LINE:
            raise DecisionLogError(f"decision log {where}: the last line is over {MAX_LINE} bytes")
        step = min(4096, start)
        start -= step
        data = os.pread(fd, step, start) + data
    cut = data.rfind(b"\n") + 1
    return data[cut : end - start]


def _tail_state(fd: int, where: str) -> ChainState:
    """The chain's head and length from its last line alone (a pod start must not walk the
    whole log; :func:`verify_chain` walks it)."""
    line = _last_line(fd, where)
    if line is None:
        return ChainState(GENESIS, 0)
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise DecisionLogError(f"decision log {where}: the last line is not JSON") from exc
    seq = record.get("seq") if isinstance(record, dict) else None
    prev = record.get("prev") if isinstance(record, dict) else None
    if type(seq) is not int or seq < 0 or not isinstance(prev, str) or len(prev) != 64:
        raise DecisionLogError(
            f"decision log {where}: the last line has no seq and prev",
            hint="the file was edited or corrupted; keep it for investigation",
        )
    return ChainState(_digest(line), seq + 1)


def chain_head_fd(fd: int, where: str) -> str:
    """The head of a log root opened by fd (``where`` names it in messages), from its last
    line: root's log is root's alone, and a verifier walks the chain (:func:`verify_chain`)."""
    return _tail_state(fd, where).head


def append_fd(fd: int, where: str, entry: Mapping[str, Any]) -> str:
    """Append one entry to a log opened by the caller (``O_RDWR|O_APPEND``, e.g. root's,
    opened without following symlinks) under its ``flock``; returns the new head. It links
    to the last line only (O(1) in the log's length): root's log is written by root alone."""
    if "prev" in entry or "seq" in entry:
        raise ValueError("prev and seq are set by the log")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            return _append_locked(fd, where, _tail_state(fd, where), entry)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError as exc:
        raise DecisionLogError(
            f"cannot append to decision log {where}: {exc.strerror}",
            hint="check the data directory (--dir)",
        ) from exc


def _append_locked(fd: int, where: str, state: ChainState, entry: Mapping[str, Any]) -> str:
    record = {**entry, "prev": state.head, "seq": state.count}
    line = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    if len(line) > MAX_LINE:
        raise DecisionLogError(f"decision log entry of {len(line)} bytes is too large")
    written = os.write(fd, line + b"\n")
    if written != len(line) + 1:
        raise DecisionLogError(f"decision log {where}: short write")
    os.fsync(fd)
    return _digest(line)


@contextmanager
def _locked(path: Path) -> Iterator[int]:
    path.parent.mkdir(mode=0o2770, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o660)
    st = os.fstat(fd)
    if st.st_uid == os.geteuid() and st.st_mode & 0o777 != 0o660:
        os.fchmod(fd, 0o660)  # the unprivileged fetch (group rkt) appends its decisions too
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def append(path: Path, entry: Mapping[str, Any]) -> str:
    """Append one entry under the lock; returns the new head."""
    if "prev" in entry or "seq" in entry:
        raise ValueError("prev and seq are set by the log")
    try:
        with _locked(path) as fd:
            return _append_locked(fd, str(path), _walk(path), entry)
    except OSError as exc:
        raise DecisionLogError(
            f"cannot append to decision log {path}: {exc.strerror}",
            hint="run as root (the log lives under --dir)",
        ) from exc


def append_decision(data_dir: Path, decision: Decision) -> str:
    """Record a decision (allow, warn or deny) in ``<data-dir>/policy/decisions.jsonl`` (the
    fetch side's log; root's run gates append to their own with :func:`append_decision_fd`)."""
    return append(log_path(data_dir), {"decision": decision.to_json()})


def append_decision_fd(fd: int, where: str, decision: Decision) -> str:
    return append_fd(fd, where, {"decision": decision.to_json()})


def root_log_path(data_dir: Path) -> Path:
    """Root's decision log: run gates, measured at pod start (``<dir>/private/``)."""
    return data_dir / "private" / LOG_NAME

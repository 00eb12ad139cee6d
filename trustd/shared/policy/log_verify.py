"""``rkt policy log verify``: walk a decision log's hash chain and name its first broken link.

The same chain rules as :func:`trustd.shared.policy.log.verify_chain` (each line's ``prev`` is
the sha256 of the line before, ``GENESIS`` first, ``seq`` counts from 0), but instead of
stopping with an error this says *which* line breaks the chain and what that looks like: a
``seq`` that jumps ahead (lines removed before it), one that goes back (a line inserted, or
lines reordered), or a ``prev`` that does not match (the line before it was rewritten). The
log is opened without following a symlink and must be a regular file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from trustd.shared._dataclass import frozen
from trustd.shared._fsutil import read_regular
from trustd.shared.errors import printable
from trustd.shared.policy.log import GENESIS

State = Literal["ok", "absent", "broken", "unreadable", "skipped"]


@frozen
class LogCheck:
    """What verifying one log found."""

    label: str  # "fetch log (group rkt)" / "run log (root)"
    path: Path
    state: State
    lines: int = 0  # lines that chain correctly (before the break)
    head: str = GENESIS  # sha256 of the last good line
    broken_line: int | None = None  # 1-based line number of the first broken link
    problem: str = ""
    last: str = ""  # the last good decision, one line

    def describe(self) -> str:
        """One line for a terminal: what came from the file is shown with its control
        characters escaped (a group member writes the fetch log)."""
        return printable(self._describe())

    def _describe(self) -> str:
        where = f"{self.label} {self.path}"
        if self.state == "ok":
            tail = f"; last: {self.last}" if self.last else ""
            return f"{where}: ok, {self.lines} line(s), head {self.head}{tail}"
        if self.state == "absent":
            return f"{where}: absent (no decisions recorded yet)"
        if self.state == "broken":
            return f"{where}:{self.broken_line}: BROKEN: {self.problem}"
        return f"{where}: not checked: {self.problem}"


MAX_LOG_BYTES = 64 << 20  # ~200,000 decisions; a member may grow (or sparsely truncate) theirs


def _summary(record: dict[str, object]) -> str:
    decision = record.get("decision")
    if not isinstance(decision, dict):
        return ""
    parts = [str(decision.get(k, "?")) for k in ("gate", "image", "verdict")]
    return f"{parts[0]} {parts[1]}: {parts[2]} (scope {decision.get('scope', '?')})"


def _link_problem(record: dict[str, object], number: int, head: str, count: int) -> str | None:
    seq, prev = record.get("seq"), record.get("prev")
    if type(seq) is not int:
        return f"line {number} has no integer seq (expected seq {count}): not a log entry"
    if seq > count:
        return (
            f"seq {seq} where {count} was expected: {seq - count} line(s) before line "
            f"{number} are missing (removed, or lines were reordered)"
        )
    if seq < count:
        return (
            f"seq {seq} where {count} was expected: line {number} was inserted, or lines "
            "were reordered"
        )
    if prev != head:
        before = "GENESIS" if number == 1 else f"the sha256 of line {number - 1}"
        return (
            f"prev {str(prev)[:16]}... is not {before} ({head[:16]}...): "
            + (f"line {number - 1} was rewritten" if number > 1 else "the first line was forged")
            + f", or line {number} was"
        )
    return None


def check_log(path: Path, label: str) -> LogCheck:
    """Verify one log; never raises for what the file holds (the result says it)."""
    try:
        data = read_regular(path, MAX_LOG_BYTES)
    except FileNotFoundError:
        return LogCheck(label, path, "absent")
    except OSError as exc:
        return LogCheck(label, path, "unreadable", problem=f"cannot read: {exc.strerror}")
    head, count, last = GENESIS, 0, ""
    lines = data.split(b"\n")
    complete = lines[:-1]  # what follows the last newline is an incomplete line (or empty)
    for number, line in enumerate(complete, 1):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            problem = f"line {number} is not a JSON object (corrupted or edited)"
        else:
            problem = _link_problem(record, number, head, count) or ""
        if problem:
            return LogCheck(label, path, "broken", count, head, number, problem, last)
        head, count = hashlib.sha256(line).hexdigest(), count + 1
        last = _summary(record)
    if lines[-1]:
        number = len(complete) + 1
        problem = f"line {number}, the last, is incomplete: a write was cut short or it was edited"
        return LogCheck(label, path, "broken", count, head, number, problem, last)
    return LogCheck(label, path, "ok", count, head, last=last)

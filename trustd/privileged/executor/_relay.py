"""Apps' output, line by line, with rkt's journal prefix: ``<app>[<pid>]: <line>``.

rkt's stage1 sent each app's stdout and stderr to the pod's journal, whose console copy shows
every line as ``<app>[<pid>]: <line>`` (the pid as seen inside the pod). Here each app process
(and each post-stop handler) gets its own pair of pipes; the pod's init reads them and writes
whole prefixed lines to its own stdout and stderr (stdout stays stdout, stderr stays stderr).

* A line is written with a single ``write`` by the one relay process, so the lines of two apps
  never interleave inside a line.
* Bytes pass unchanged (no decoding): binary output arrives as it was written, cut at ``\\n``.
* A partial line waits for its newline; at EOF (or when the pod ends) it is written with a
  newline appended, as journald does. A line longer than :data:`MAX_LINE` is cut into pieces,
  each prefixed (journald's line limit).
* If the reader of rkt's output went away (EPIPE), the output is dropped, never blocking the
  apps.

``--interactive`` runs and the fly flavor pass the app's own stdio through unchanged.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass, field

MAX_LINE = 64 * 1024
_READ = 64 * 1024


@dataclass(slots=True)
class _Stream:
    prefix: bytes
    dest: int
    pending: bytearray = field(default_factory=bytearray)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
            continue


@dataclass(slots=True)
class Pipes:
    """One process's stdout and stderr pipes; the child keeps the write ends."""

    out_r: int
    out_w: int
    err_r: int
    err_w: int

    def in_child(self) -> None:
        """In the forked process: the write ends become its stdout and stderr."""
        os.dup2(self.out_w, 1)
        os.dup2(self.err_w, 2)
        for fd in (self.out_r, self.out_w, self.err_r, self.err_w):
            os.close(fd)

    def close_write_ends(self) -> None:
        os.close(self.out_w)
        os.close(self.err_w)


class Relay:
    """The pod init's reader of every app's output (see the module docstring)."""

    def __init__(self, stdout: int = 1, stderr: int = 2) -> None:
        self._stdout, self._stderr = stdout, stderr
        self._streams: dict[int, _Stream] = {}
        self._broken: set[int] = set()

    def pipes(self) -> Pipes:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        return Pipes(out_r, out_w, err_r, err_w)

    def attach(self, pipes: Pipes, app: str, pid: int) -> None:
        """After the fork: read ``pipes`` as ``app[pid]``; init drops its write ends."""
        pipes.close_write_ends()
        prefix = f"{app}[{pid}]: ".encode()
        self._streams[pipes.out_r] = _Stream(prefix, self._stdout)
        self._streams[pipes.err_r] = _Stream(prefix, self._stderr)

    def fds(self) -> list[int]:
        return list(self._streams)

    def readable(self, fd: int) -> None:
        """Read what ``fd`` has; write every complete line; at EOF, the rest and close."""
        stream = self._streams[fd]
        try:
            chunk = os.read(fd, _READ)
        except BlockingIOError:
            return
        if not chunk:
            self._finish(fd)
            return
        stream.pending += chunk
        self._emit(stream, final=False)

    def drain(self) -> None:
        """The pod ends: what every pipe still holds (never waiting for a writer that lives
        on in the background), each partial line completed, then close."""
        for fd in list(self._streams):
            os.set_blocking(fd, False)
            with contextlib.suppress(BlockingIOError):
                while fd in self._streams:
                    self.readable(fd)
            if fd in self._streams:
                self._finish(fd)

    def _finish(self, fd: int) -> None:
        stream = self._streams.pop(fd)
        self._emit(stream, final=True)
        os.close(fd)

    def _emit(self, stream: _Stream, *, final: bool) -> None:
        buf = stream.pending
        out = bytearray()
        while True:
            nl = buf.find(b"\n", 0, MAX_LINE)
            if nl >= 0:
                line, rest = buf[: nl + 1], buf[nl + 1 :]
            elif len(buf) >= MAX_LINE:
                line, rest = buf[:MAX_LINE] + b"\n", buf[MAX_LINE:]
            elif final and buf:
                line, rest = buf + b"\n", bytearray()
            else:
                break
            out += stream.prefix + line
            buf = rest
        stream.pending = buf
        if out:
            self._write(stream.dest, bytes(out))

    def _write(self, dest: int, data: bytes) -> None:
        if dest in self._broken:
            return
        try:
            _write_all(dest, data)
        except OSError as exc:  # rkt's reader went away: keep reading, drop the output
            if exc.errno not in (errno.EPIPE, errno.EBADF):
                raise
            self._broken.add(dest)

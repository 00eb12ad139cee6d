"""Bounds on the metadata daemon's HTTP side (red team 4; ADR 0025 addendum).

Anyone who reaches the service's address and port -- any pod on the pod network, any local
user -- may connect. Before these bounds every connection got a thread of its own for as long
as the client fed it a byte every few seconds, so a few thousand slow connections used up the
daemon's threads and file descriptors and no pod got an answer. Now:

* at most :data:`MAX_CONNECTIONS` connections are served at once (one handler thread each:
  the pool is bounded by this count); past it, or past the limits below, a connection gets a
  ``503`` and is closed at once, without a thread;
* connections from addresses no registered pod has (the host's own, an unregistered pod's)
  share at most :data:`UNREGISTERED_SHARE` of them, so the rest stays for registered pods;
  a pod's address is its CNI address, which no host user can take as a TCP source (the
  handshake's answer goes down that pod's veth);
* any one address holds at most :data:`PER_ADDRESS`, so one pod cannot starve the others;
* each connection lives at most :data:`DEADLINE_SECONDS` in all (request read, answer
  written), whatever it trickles: a reaper shuts it down after that;
* it may send at most :data:`MAX_HEAD` bytes of request line and headers, and a body only of
  the length it declared (the handler allows that much more).

``--net=host`` pods register the host's loopback address, which every host user shares: there
the per-address limit is shared with them too (the token is their only guard already).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import BinaryIO

MAX_CONNECTIONS = 64
UNREGISTERED_SHARE = 32
PER_ADDRESS = 8
DEADLINE_SECONDS = 10.0
READ_TIMEOUT = 5.0  # seconds per socket operation, within the deadline
MAX_HEAD = 16 << 10
REAP_INTERVAL = 0.5
BUSY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
TOO_LARGE = (
    b"HTTP/1.0 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
    b"Connection: close\r\n\r\n"
)


def _plain(address: str) -> str:
    return address.removeprefix("::ffff:")


class Admission:
    """Which connections are served; the reaper that ends those past their deadline."""

    def __init__(self, registered: Callable[[str], bool]) -> None:
        self._registered = registered
        self._lock = threading.Lock()
        self._open: dict[socket.socket, tuple[str, bool, float]] = {}
        self._per: Counter[str] = Counter()
        self._unregistered = 0
        self._stopped = threading.Event()
        self.refused = 0  # connections refused since start, and admitted (for the tests)
        self.admitted = 0

    def admit(self, conn: socket.socket, address: str) -> bool:
        """Count ``conn`` in, or False: it must be refused."""
        address = _plain(address)
        known = self._registered(address)  # the registry's own lock, never under ours
        with self._lock:
            over = (
                len(self._open) >= MAX_CONNECTIONS
                or self._per[address] >= PER_ADDRESS
                or (not known and self._unregistered >= UNREGISTERED_SHARE)
            )
            if over:
                self.refused += 1
                return False
            self._open[conn] = (address, known, time.monotonic() + DEADLINE_SECONDS)
            self._per[address] += 1
            self._unregistered += not known
            self.admitted += 1
        return True

    def release(self, conn: socket.socket) -> None:
        """``conn`` is done (before it is closed: the reaper never touches a closed one)."""
        with self._lock:
            entry = self._open.pop(conn, None)
            if entry is None:
                return
            address, known, _ = entry
            self._per[address] -= 1
            if not self._per[address]:
                del self._per[address]
            self._unregistered -= not known

    def reap(self) -> int:
        """Shut down every connection past its deadline (its handler then sees the end of
        the stream and returns); how many."""
        now = time.monotonic()
        count = 0
        with self._lock:  # release() takes it before the close: no fd is reused under us
            for conn, (_, _, deadline) in self._open.items():
                if deadline <= now:
                    with contextlib.suppress(OSError):
                        conn.shutdown(socket.SHUT_RDWR)
                    count += 1
        return count

    def reap_forever(self) -> None:
        while not self._stopped.wait(REAP_INTERVAL):
            self.reap()

    def stop(self) -> None:
        self._stopped.set()

    def open_count(self) -> int:
        with self._lock:
            return len(self._open)


def refuse(conn: socket.socket) -> None:
    """A 503, if the socket takes it at once; the caller closes it."""
    with contextlib.suppress(OSError):
        conn.setblocking(False)
        conn.send(BUSY)
    drain(conn)


def drain(conn: socket.socket, limit: int = 1 << 16) -> None:
    """Read what the client sent already, without waiting: a close on unread data would
    reset the connection, and the client could lose the answer just sent. (Non-blocking
    mode, not MSG_DONTWAIT: on a socket with a timeout Python would wait that long.)"""
    with contextlib.suppress(OSError):
        conn.setblocking(False)
        while limit > 0 and (chunk := conn.recv(min(limit, 1 << 14))):
            limit -= len(chunk)


class TooLarge(OSError):
    """The client sent more than its request may hold."""


class CappedReader:
    """A request's input, read at most ``left`` bytes in all (TooLarge past them: a request
    cut short must not pass for a whole one); :meth:`allow` adds a body's declared length
    once the handler accepted it."""

    def __init__(self, raw: BinaryIO, left: int = MAX_HEAD) -> None:
        self._raw, self.left = raw, left

    def _cap(self, size: int | None) -> int:
        return self.left if size is None or size < 0 else min(size, self.left)

    def readline(self, size: int | None = -1) -> bytes:
        cap = self._cap(size)
        if cap <= 0:
            raise TooLarge(f"request larger than {MAX_HEAD} bytes of line and headers")
        line = self._raw.readline(cap)
        self.left -= len(line)
        if not line.endswith(b"\n") and len(line) == cap and cap == self.left + len(line):
            raise TooLarge(f"request larger than {MAX_HEAD} bytes of line and headers")
        return line

    def read(self, size: int | None = -1) -> bytes:
        cap = self._cap(size)
        data = self._raw.read(cap) if cap > 0 else b""
        self.left -= len(data)
        return data

    def allow(self, size: int) -> None:
        self.left += size

    def close(self) -> None:
        self._raw.close()

"""The ACI inspection, run on the bytes of a download as they arrive (issue #14: one pass).

The transport pushes each chunk of a body to a sink; :func:`trustd.shared.appc.inspect_aci`
pulls from a stream. A :class:`FeedInspector` joins the two: the download thread writes each
chunk to the scratch file and hands it over here, and a second thread runs the unchanged
inspection (every entry rule, every cap, the sha512 image ID) over exactly those bytes, a
resumed download's earlier bytes first, read back from the scratch file. Hashing, TLS reads
and file writes release the GIL, so the two overlap.

A hostile archive is refused as soon as the inspection sees the broken rule: the download
stops there. A failed download stops the inspection. What is handed over is bounded
(:data:`QUEUED` chunks), so a stalled inspection stalls the download, not memory.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from typing import Final

from trustd.shared.appc.aci import AciInfo, AciLimits, inspect_aci
from trustd.shared.errors import TransportError

BATCH: Final = 1 << 20  # bytes handed over at once
QUEUED: Final = 8  # batches in flight: at most 8 MiB held
_WAIT: Final = 0.2  # seconds between checks that the other side is still there
_END: Final = object()  # the body is complete
_ABORT: Final = object()  # the download failed

INSPECT_THREAD = "trustd-aci-inspect"  # tests check that it ends with the download


class _Aborted(OSError):
    """The download failed: the inspection stops (its error is not the one reported)."""


class _Feed:
    """The stream the inspection reads: ``head`` bytes of ``fd`` (a resumed download's
    earlier part), then the chunks put on ``chunks`` until :data:`_END`."""

    def __init__(self, chunks: queue.Queue[object], fd: int | None, head: int) -> None:
        self._chunks = chunks
        self._fd, self._head, self._at = fd, head, 0
        self._rest, self._pos = b"", 0  # the batch being read, and how far
        self._ended = False

    def read(self, size: int = -1, /) -> bytes:
        want = size if size >= 0 else 1 << 20
        if self._fd is not None and self._at < self._head:
            data = os.pread(self._fd, min(want, self._head - self._at), self._at)
            if not data:
                raise _Aborted("the partial download got shorter while it was read")
            self._at += len(data)
            return data
        if self._pos >= len(self._rest):
            if self._ended:
                return b""
            item = self._chunks.get()
            if item is _END:
                self._ended = True
                return b""
            if not isinstance(item, bytes):  # _ABORT
                raise _Aborted("the download failed")
            self._rest, self._pos = item, 0
        start = self._pos
        self._pos = min(start + want, len(self._rest))
        if start == 0 and self._pos == len(self._rest):
            return self._rest  # the whole batch: no copy
        return self._rest[start : self._pos]  # copies only what is returned


class FeedInspector:
    """``inspect_aci`` over a download's bytes, in a thread: :meth:`start` (at the body's
    first byte), :meth:`feed` each chunk, then :meth:`finish` for the :class:`AciInfo` (or the
    inspection's error), or :meth:`abort` when the download failed."""

    def __init__(self, name: str, limits: AciLimits | None = None) -> None:
        self.name, self.limits = name, limits or AciLimits()
        self._chunks: queue.Queue[object] = queue.Queue(QUEUED)
        self._thread: threading.Thread | None = None
        self._info: AciInfo | None = None
        self._error: BaseException | None = None
        self.fed = 0  # bytes of the body (after any resumed head) taken
        self._pending: list[bytes] = []
        self._pending_size = 0

    def start(self, fd: int | None = None, head: int = 0) -> None:
        """Begin; a resumed download's first ``head`` bytes are read back from ``fd`` (the
        download's own descriptor of its scratch file, read by offset; not closed here)."""
        if self._thread is not None:
            raise RuntimeError("the inspection already started")
        feed = _Feed(self._chunks, fd, head)
        self._thread = threading.Thread(
            target=self._run, args=(feed,), name=INSPECT_THREAD, daemon=True
        )
        self._thread.start()

    def _run(self, feed: _Feed) -> None:
        try:
            self._info = inspect_aci(feed, limits=self.limits, name=self.name)  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - handed to the download thread
            self._error = exc

    def _put(self, item: object) -> None:
        """Hand ``item`` over; raise the inspection's error at once if it already ended."""
        thread = self._thread
        if thread is None:
            raise RuntimeError("the inspection has not started")
        while True:
            if not thread.is_alive():
                self._raise_ended()
                return
            try:
                self._chunks.put(item, timeout=_WAIT)
            except queue.Full:
                continue
            return

    def _raise_ended(self) -> None:
        if self._error is not None:
            raise self._error
        raise TransportError(
            f"image {self.name}: the archive ended before the download did",
            hint="the server sent data after the end of the archive; try again",
        )

    def feed(self, chunk: bytes) -> None:
        """Take one chunk; handed over in batches of :data:`BATCH` bytes (a TLS read brings
        16 KiB, and each hand-over between the threads costs a wake-up)."""
        if chunk:
            self.fed += len(chunk)
            self._pending.append(chunk)
            self._pending_size += len(chunk)
            if self._pending_size >= BATCH:
                self.flush()

    def flush(self) -> None:
        """Hand over what :meth:`feed` holds back."""
        if self._pending:
            batch = b"".join(self._pending)
            self._pending.clear()
            self._pending_size = 0
            self._put(batch)

    def finish(self) -> AciInfo:
        """The body is complete: the inspection's result, or its error raised here."""
        self.flush()
        self._put(_END)
        self._join()
        if self._error is not None:
            raise self._error
        if self._info is None:  # pragma: no cover - the thread always sets one of the two
            raise TransportError(f"image {self.name}: the inspection gave no result")
        return self._info

    def abort(self) -> None:
        """The download failed: stop the inspection and wait for it (its error is dropped)."""
        thread = self._thread
        while thread is not None and thread.is_alive():
            try:
                self._chunks.put_nowait(_ABORT)
            except queue.Full:
                with contextlib.suppress(queue.Empty):  # make room for the abort
                    self._chunks.get_nowait()
                continue
            thread.join(_WAIT)
        self._join()

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join()

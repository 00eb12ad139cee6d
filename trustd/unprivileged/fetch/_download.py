"""Resumable, bounded downloads into the store's scratch space.

A download goes to ``cas/tmp/partial-<sha256(url)>`` under an exclusive flock (a second
fetch of the same URL waits, as rkt's did). With an ETag from the first attempt, a later
attempt resumes with ``Range`` + ``If-Range``; a 200 answer restarts from zero. A killed
fetch leaves only the partial file; what is finally stored is re-hashed and verified anyway.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from trustd.shared._dataclass import frozen
from trustd.shared.appc.aci import AciInfo, AciLimits
from trustd.shared.errors import TransportError
from trustd.shared.insecure import Insecure
from trustd.unprivileged.fetch._inspect_feed import FeedInspector
from trustd.unprivileged.transport import Limits, Response, fetch
from trustd.unprivileged.transport.progress import Progress
from trustd.unprivileged.transport.scratch import lock_scratch


@frozen
class Downloaded:
    path: Path
    response: Response
    resumed_from: int
    inspected: AciInfo | None = None  # the inspection of exactly these bytes, run as they came

    @property
    def not_modified(self) -> bool:
        return self.response.status == 304


class _FileSink:
    def __init__(
        self,
        f: BinaryIO,
        offset: int,
        progress: Progress | None,
        inspector: FeedInspector | None = None,
    ) -> None:
        self.f, self.offset, self.progress = f, offset, progress
        self.inspector = inspector
        self.total: int | None = None
        self.began = False

    def begin(self, status: int, length: int | None) -> None:
        if status != 206:  # a full body: start over
            self.f.seek(0)
            self.f.truncate()
            self.offset = 0
            if self.progress:
                self.progress.done = 0
        self.total = None if length is None else length + self.offset
        if self.inspector is not None:
            self.f.flush()  # the resumed head is read back by offset from this descriptor
            self.inspector.start(self.f.fileno(), self.offset)
        self.began = True

    def write(self, chunk: bytes) -> None:
        self.f.write(chunk)
        if self.inspector is not None:
            self.inspector.feed(chunk)
        if self.progress:
            self.progress.update(chunk, self.total)

    def end(self) -> None:
        if self.inspector is not None:
            self.inspector.flush()


@contextlib.contextmanager
def download(
    url: str,
    tmp_dir: Path,
    *,
    limits: Limits,
    insecure: Insecure,
    headers: dict[str, str],
    what: str,
    etag: str | None = None,
    inspect: AciLimits | None = None,
) -> Iterator[Downloaded]:
    """Download ``url`` (resuming a partial one) and yield it; the file is removed after.

    With ``inspect``, a 2xx body is inspected as an ACI while it arrives (the archive rules
    and caps of :func:`~trustd.shared.appc.inspect_aci`, with these limits): a broken rule
    stops the download, and :attr:`Downloaded.inspected` describes the bytes downloaded."""
    partial = tmp_dir / f"partial-{hashlib.sha256(url.encode()).hexdigest()[:40]}"
    validator = partial.with_name(partial.name + ".etag")
    fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o660)
    with os.fdopen(fd, "r+b") as f:
        lock_scratch(f.fileno(), "this file", str(partial), limits.min_rate)
        offset = f.seek(0, os.SEEK_END) if validator.is_file() else 0
        sent = dict(headers)
        if offset:
            sent |= {"Range": f"bytes={offset}-", "If-Range": validator.read_text().strip()}
        elif etag:
            sent["If-None-Match"] = etag
        progress = Progress(what, start=offset)
        inspector = None if inspect is None else FeedInspector(url, inspect)
        sink = _FileSink(f, offset, progress, inspector)
        try:
            response = fetch(url, limits=limits, insecure=insecure, headers=sent, sink=sink)
            sink.end()
            f.flush()
            inspected = inspector.finish() if inspector is not None and sink.began else None
        except BaseException:
            if inspector is not None:
                inspector.abort()
            raise
        if 200 <= response.status < 300:
            progress.finish()
        elif response.status != 304:
            raise TransportError(f"fetching {url}: expected a 200 OK got {response.status}")
        if response.headers.get("etag"):
            validator.write_text(response.headers["etag"])
        f.flush()
        os.fsync(f.fileno())
        yield Downloaded(partial, response, offset if response.status == 206 else 0, inspected)
        partial.unlink(missing_ok=True)
        validator.unlink(missing_ok=True)

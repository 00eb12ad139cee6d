"""Download progress on stderr: a bar on a terminal, plain lines otherwise.

Shared by ACI downloads (``fetch``) and Docker layers (``docker``), so it sits
in the transport layer both of them already use.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} GB"  # pragma: no cover


class Progress:
    """``Downloading ACI: [=====     ] 3.28 MB/3.70 MB`` (rkt's format), at most ~4 updates/s."""

    def __init__(self, what: str, stream: TextIO | None = None, start: int = 0) -> None:
        self.what = what
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.done = start
        self._last = 0.0
        self._last_fraction = -1

    def update(self, chunk: bytes, total: int | None) -> None:
        self.done += len(chunk)
        now = time.monotonic()
        if self.tty and now - self._last >= 0.25:
            self._last = now
            self.stream.write("\r" + self._line(total))
        elif not self.tty and total:
            quarter = self.done * 4 // total
            if quarter > max(self._last_fraction, 0):
                self._last_fraction = quarter
                self.stream.write(self._line(total) + "\n")

    def _line(self, total: int | None) -> str:
        if not total:
            return f"Downloading {self.what}: {_human(self.done)}"
        width = 30
        filled = min(width, self.done * width // max(total, 1))
        bar = "=" * filled + " " * (width - filled)
        return f"Downloading {self.what}: [{bar}] {_human(self.done)}/{_human(total)}"

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\r" + self._line(self.done) + "\n")
        self.stream.flush()

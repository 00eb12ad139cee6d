"""A random (version 4) UUID's text without the ``uuid`` module, which loads ``platform``
and more at import (~30 modules' worth of a pod start's imports, issue #14)."""

from __future__ import annotations

import os


def uuid4() -> str:
    """``str(uuid.uuid4())``: 122 bits from ``os.urandom``, the version (4) and the RFC 4122
    variant bits set exactly as the ``uuid`` module sets them."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # variant 10xx: RFC 4122
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

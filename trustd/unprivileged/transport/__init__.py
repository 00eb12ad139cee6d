"""Bounded HTTP(S) transport: every download has a size cap and a wall-clock timeout."""

from trustd.unprivileged.transport._http import (
    DISCOVERY_LIMITS,
    IMAGE_LIMITS,
    KEY_LIMITS,
    SIGNATURE_LIMITS,
    Limits,
    Response,
    Sink,
    fetch,
    speaks_tls,
)

__all__ = [
    "DISCOVERY_LIMITS",
    "IMAGE_LIMITS",
    "KEY_LIMITS",
    "SIGNATURE_LIMITS",
    "Limits",
    "Response",
    "Sink",
    "fetch",
    "speaks_tls",
]

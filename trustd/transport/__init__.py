"""Bounded HTTP(S) transport: every download has a size cap and a wall-clock timeout."""

from trustd.transport._http import DISCOVERY_LIMITS, KEY_LIMITS, Limits, Response, fetch

__all__ = ["DISCOVERY_LIMITS", "KEY_LIMITS", "Limits", "Response", "fetch"]

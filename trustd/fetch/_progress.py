"""Moved to :mod:`trustd.transport.progress` (``trustd.docker`` shows it too); kept here."""

from trustd.transport.progress import Progress

__all__ = ["Progress"]

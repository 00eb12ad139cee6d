"""The I/O edge of discovery: how a discovery URL becomes a Response."""

from __future__ import annotations

from typing import Protocol

from trustd.shared.insecure import Insecure
from trustd.unprivileged.transport import DISCOVERY_LIMITS, Response, fetch


class Fetcher(Protocol):
    """GET one URL. Raise TransportError for network failures; return non-200 answers."""

    def __call__(self, url: str) -> Response: ...


def default_fetcher(insecure: Insecure) -> Fetcher:
    """The real transport with discovery's limits (1 MiB, 20 s)."""

    def get(url: str) -> Response:
        return fetch(url, limits=DISCOVERY_LIMITS, insecure=insecure)

    return get

"""Discovery's data: meta tags as served, endpoints as rendered, attempts as made."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

from trustd.shared._dataclass import frozen
from trustd.shared.appc.identifier import ACIdentifier, InvalidIdentifierError
from trustd.shared.errors import TransportError

MetaKind = Literal["ac-discovery", "ac-discovery-pubkeys"]
AC_DISCOVERY: Final = "ac-discovery"
AC_DISCOVERY_PUBKEYS: Final = "ac-discovery-pubkeys"


@frozen
class MetaTag:
    """One ``<meta name="ac-discovery[-pubkeys]" content="PREFIX URL">`` as found in a page."""

    kind: MetaKind
    prefix: str
    url: str

    def applies_to(self, name: ACIdentifier) -> bool:
        """True when ``prefix`` is ``name`` or an ancestor of it, on whole path segments.

        appc and rkt used a string prefix (``example.com/fo`` matched ``example.com/foo``);
        trustd never does (docs/adr/0002). A prefix that is not a valid AC Identifier
        (``example.com/``, ``Example.com``) matches nothing.
        """
        try:
            prefix = ACIdentifier(self.prefix)
        except InvalidIdentifierError:
            return False
        return name.is_within(prefix)


@frozen
class ACIEndpoint:
    """Where an image and its detached signature can be downloaded."""

    aci: str
    asc: str


@frozen
class Attempt:
    """One URL discovery tried, and why it did not settle the question."""

    url: str
    reason: str

    def __str__(self) -> str:
        return f"{self.url}: {self.reason}"


class DiscoveryError(TransportError):
    """No level of the name offered what was wanted; ``attempts`` says what was tried."""

    def __init__(self, message: str, *, attempts: Sequence[Attempt], hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.attempts: tuple[Attempt, ...] = tuple(attempts)

"""The discovery walk (appc spec 0.8.11, discovery/http.go; rkt reference 4.3, 5.2).

For ``a/b/c`` try ``https://a/b/c?ac-discovery=1``, then ``https://a/b?…``, then
``https://a?…``. A level counts when it answers 200; the walk stops at the first level
that yields at least one wanted item (ACI endpoints, or keys). With ``Insecure.HTTP`` a
failed or non-200 https attempt is retried over plain http at the same level. Every URL
tried is kept with its outcome, so ``--debug`` can show why discovery failed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from trustd.shared.appc.identifier import ACIdentifier
from trustd.shared.errors import TransportError
from trustd.shared.insecure import Insecure
from trustd.unprivileged.discovery._fetcher import Fetcher, default_fetcher
from trustd.unprivileged.discovery._parse import decode_page, parse_meta_tags
from trustd.unprivileged.discovery._template import render_endpoint
from trustd.unprivileged.discovery.model import (
    AC_DISCOVERY,
    AC_DISCOVERY_PUBKEYS,
    ACIEndpoint,
    Attempt,
    DiscoveryError,
    MetaKind,
    MetaTag,
)
from trustd.unprivileged.transport import Response

T = TypeVar("T")
Wanted = Callable[[Sequence[MetaTag]], list[T]]


def discover_images(
    name: ACIdentifier,
    labels: Mapping[str, str],
    *,
    insecure: Insecure,
    fetcher: Fetcher | None = None,
) -> list[ACIEndpoint]:
    """The ACI endpoints for ``name`` and ``labels``, in page order (rkt uses the first)."""

    def wanted(tags: Sequence[MetaTag]) -> list[ACIEndpoint]:
        rendered = (
            render_endpoint(t.url, name, labels) for t in _applicable(tags, AC_DISCOVERY, name)
        )
        return [ep for ep in rendered if ep is not None]

    return _walk(name, AC_DISCOVERY, wanted, insecure, fetcher)


def discover_pubkeys(
    name: ACIdentifier, *, insecure: Insecure, fetcher: Fetcher | None = None
) -> list[str]:
    """The public key URLs offered for ``name``, in page order. Not templates."""

    def wanted(tags: Sequence[MetaTag]) -> list[str]:
        return [t.url for t in _applicable(tags, AC_DISCOVERY_PUBKEYS, name)]

    return _walk(name, AC_DISCOVERY_PUBKEYS, wanted, insecure, fetcher)


def _applicable(tags: Sequence[MetaTag], kind: MetaKind, name: ACIdentifier) -> list[MetaTag]:
    return [t for t in tags if t.kind == kind and t.applies_to(name)]


def _walk(
    name: ACIdentifier,
    kind: MetaKind,
    wanted: Wanted[T],
    insecure: Insecure,
    fetcher: Fetcher | None,
) -> list[T]:
    get = fetcher if fetcher is not None else default_fetcher(insecure)
    attempts: list[Attempt] = []
    for level in name.ancestors():
        answered = _fetch_level(level, insecure, get, attempts)
        if answered is None:
            continue
        url, resp = answered
        tags = parse_meta_tags(decode_page(resp.body))
        found = wanted(tags)
        if found:
            return found
        attempts.append(Attempt(url, _why_nothing(tags, kind, name, level)))
    raise _failed(name, kind, attempts)


def _fetch_level(
    level: ACIdentifier, insecure: Insecure, get: Fetcher, attempts: list[Attempt]
) -> tuple[str, Response] | None:
    """The first 200 answer for this level (https, then http if allowed), else None."""
    schemes = ("https", "http") if Insecure.HTTP in insecure else ("https",)
    for scheme in schemes:
        url = f"{scheme}://{level}?ac-discovery=1"
        try:
            resp = get(url)
        except TransportError as exc:
            attempts.append(Attempt(url, exc.message))
            continue
        if resp.status == 200:
            return url, resp
        attempts.append(Attempt(url, f"expected a 200 OK got {resp.status}"))
    return None


def _why_nothing(
    tags: Sequence[MetaTag], kind: MetaKind, name: ACIdentifier, level: ACIdentifier
) -> str:
    of_kind = [t for t in tags if t.kind == kind]
    if not of_kind:
        return f"meta tag '{kind}' not found on {level}"
    if not _applicable(of_kind, kind, name):
        prefixes = ", ".join(sorted({repr(t.prefix) for t in of_kind}))
        return f"meta tag '{kind}' on {level} is for other prefixes ({prefixes}), not {name}"
    return f"no '{kind}' template on {level} could be filled in with the labels given"


def _failed(name: ACIdentifier, kind: MetaKind, attempts: list[Attempt]) -> DiscoveryError:
    what = "image endpoints" if kind == AC_DISCOVERY else "public keys"
    return DiscoveryError(
        f'discovery failed: no {what} found for "{name}" ({len(attempts)} URLs tried)',
        attempts=attempts,
        hint=f"check the name; the server must answer https://{name}?ac-discovery=1 (or a "
        f'parent path) with <meta name="{kind}" content="PREFIX URL">; '
        "--debug lists every URL tried and why it failed",
    )

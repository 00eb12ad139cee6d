"""The discovery walk: levels, the http fallback, and what a failure reports.

The fetchers here are scripted stand-ins for the network (URL -> answer or error): these
tests are about the order of attempts, not about HTTP. Real HTTPS is exercised in
tests/integration/test_discovery_https.py.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from trustd.shared.appc.identifier import ACIdentifier
from trustd.shared.errors import TransportError, UserError
from trustd.shared.insecure import Insecure
from trustd.unprivileged.discovery import (
    ACIEndpoint,
    DiscoveryError,
    discover_images,
    discover_pubkeys,
)
from trustd.unprivileged.transport import Response

PAGE = (
    b'<meta name="ac-discovery" content="example.com https://s.example.com/{name}.{ext}">'
    b'<meta name="ac-discovery-pubkeys" content="example.com https://example.com/k.gpg">'
)
NAME = ACIdentifier("example.com/app")
TOP = "https://example.com/app?ac-discovery=1"
ROOT = "https://example.com?ac-discovery=1"


class Scripted:
    """Answers from a table; a URL not in it is refused as unreachable."""

    def __init__(self, answers: Mapping[str, int | bytes | TransportError]) -> None:
        self.answers = answers
        self.requested: list[str] = []

    def __call__(self, url: str) -> Response:
        self.requested.append(url)
        answer = self.answers.get(url, TransportError(f"{url}: connection refused"))
        if isinstance(answer, TransportError):
            raise answer
        if isinstance(answer, int):
            return Response(url, answer, {}, b"")
        return Response(url, 200, {}, answer)


def test_transport_errors_are_recorded_and_the_walk_goes_on() -> None:
    fetcher = Scripted({ROOT: PAGE})
    keys = discover_pubkeys(NAME, insecure=Insecure.NONE, fetcher=fetcher)
    assert keys == ["https://example.com/k.gpg"]
    assert fetcher.requested == [TOP, ROOT]


def test_the_first_level_with_an_answer_wins() -> None:
    other = PAGE.replace(b"https://s.example.com", b"https://deeper.example.com")
    fetcher = Scripted({TOP: other, ROOT: PAGE})
    got = discover_images(NAME, {}, insecure=Insecure.NONE, fetcher=fetcher)
    assert got == [
        ACIEndpoint(
            "https://deeper.example.com/example.com/app.aci",
            "https://deeper.example.com/example.com/app.aci.asc",
        )
    ]
    assert fetcher.requested == [TOP]


def test_no_plain_http_without_insecure_http() -> None:
    fetcher = Scripted({"http://example.com/app?ac-discovery=1": PAGE})
    with pytest.raises(DiscoveryError):
        discover_pubkeys(NAME, insecure=Insecure.TLS, fetcher=fetcher)
    assert all(url.startswith("https://") for url in fetcher.requested)


@pytest.mark.parametrize("https_answer", [404, 500, TransportError("TLS handshake failed")])
def test_insecure_http_retries_the_same_level_over_http(
    https_answer: int | TransportError,
) -> None:
    plain = "http://example.com/app?ac-discovery=1"
    fetcher = Scripted({TOP: https_answer, plain: PAGE})
    keys = discover_pubkeys(NAME, insecure=Insecure.HTTP, fetcher=fetcher)
    assert keys == ["https://example.com/k.gpg"]
    assert fetcher.requested == [TOP, plain]


def test_failure_lists_every_attempt_in_order() -> None:
    fetcher = Scripted({TOP: 404, ROOT: b"<html>no tags</html>"})
    with pytest.raises(DiscoveryError) as info:
        discover_images(NAME, {}, insecure=Insecure.HTTP, fetcher=fetcher)
    err = info.value
    assert isinstance(err, TransportError)
    assert [(a.url, a.reason) for a in err.attempts] == [
        (TOP, "expected a 200 OK got 404"),
        (
            "http://example.com/app?ac-discovery=1",
            "http://example.com/app?ac-discovery=1: connection refused",
        ),
        (ROOT, "meta tag 'ac-discovery' not found on example.com"),
    ]
    assert (
        err.message
        == 'discovery failed: no image endpoints found for "example.com/app" (3 URLs tried)'
    )
    assert "https://example.com/app?ac-discovery=1" in err.hint


def test_unrenderable_templates_are_explained() -> None:
    page = b'<meta name="ac-discovery" content="example.com https://s/{name}-{os}.{ext}">'
    fetcher = Scripted({TOP: page, ROOT: 404})
    with pytest.raises(DiscoveryError) as info:
        discover_images(NAME, {}, insecure=Insecure.NONE, fetcher=fetcher)
    assert "could be filled in with the labels given" in info.value.attempts[0].reason


def test_errors_other_than_transport_are_not_swallowed() -> None:
    def fetcher(url: str) -> Response:
        raise UserError("bad invocation")

    with pytest.raises(UserError):
        discover_pubkeys(NAME, insecure=Insecure.NONE, fetcher=fetcher)

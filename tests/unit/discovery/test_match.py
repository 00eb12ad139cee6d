"""Which meta tags apply to a name: whole path segments, never a raw string prefix.

appc (discovery.go) and rkt applied a tag when ``strings.HasPrefix(app, prefix)``. The
``appc`` column records that older answer so the table documents every difference.
"""

from __future__ import annotations

import pytest

from trustd.shared.appc.identifier import ACIdentifier
from trustd.shared.insecure import Insecure
from trustd.unprivileged.discovery import DiscoveryError, MetaTag, discover_images, discover_pubkeys
from trustd.unprivileged.transport import Response

MATCHES = [
    # prefix, app name, trustd, appc (string prefix)
    ("example.com", "example.com", True, True),
    ("example.com", "example.com/foo", True, True),
    ("example.com/foo", "example.com/foo", True, True),
    ("example.com/foo", "example.com/foo/bar", True, True),
    ("example.com/foo/bar", "example.com/foo", False, False),
    ("other.com", "example.com/foo", False, False),
    # the differences: a prefix ending inside a segment
    ("example.com/fo", "example.com/foo", False, True),
    ("example.co", "example.com/foo", False, True),
    ("ex", "example.com", False, True),
    # prefixes that are not AC Identifiers match nothing
    ("example.com/", "example.com/foo", False, True),
    ("Example.com", "example.com/foo", False, False),
    ("example.com/../evil.com", "example.com/foo", False, False),
]


@pytest.mark.parametrize(("prefix", "app", "trustd", "appc"), MATCHES)
def test_prefix_matching_is_on_whole_segments(
    prefix: str, app: str, trustd: bool, appc: bool
) -> None:
    tag = MetaTag("ac-discovery", prefix, "https://storage.example.com/{name}.{ext}")
    assert tag.applies_to(ACIdentifier(app)) is trustd
    assert app.startswith(prefix) is appc  # what appc and rkt would have done


def _page(prefix: str) -> bytes:
    return (
        f'<meta name="ac-discovery" content="{prefix} https://s.example.com/{{name}}.{{ext}}">'
        f'<meta name="ac-discovery-pubkeys" content="{prefix} https://s.example.com/k.gpg">'
    ).encode()


def test_a_page_for_a_string_prefix_is_not_used() -> None:
    """``example.com/fo`` serves keys; appc would hand them to ``example.com/foo``."""

    def fetcher(url: str) -> Response:
        return Response(url, 200, {}, _page("example.com/fo"))

    name = ACIdentifier("example.com/foo")
    with pytest.raises(DiscoveryError) as info:
        discover_pubkeys(name, insecure=Insecure.NONE, fetcher=fetcher)
    assert "is for other prefixes ('example.com/fo'), not example.com/foo" in str(
        info.value.attempts[0]
    )
    with pytest.raises(DiscoveryError):
        discover_images(name, {}, insecure=Insecure.NONE, fetcher=fetcher)


def test_a_page_for_a_parent_prefix_is_used() -> None:
    def fetcher(url: str) -> Response:
        return Response(url, 200, {}, _page("example.com"))

    name = ACIdentifier("example.com/foo")
    assert discover_pubkeys(name, insecure=Insecure.NONE, fetcher=fetcher) == [
        "https://s.example.com/k.gpg"
    ]

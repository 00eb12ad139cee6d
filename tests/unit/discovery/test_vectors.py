"""Every case of appc's TestDiscoverEndpoints (tests/vectors/appc-spec/discovery_cases.json).

The fetcher here is a stand-in for the network that answers from the vector pages: these
cases are about the walk, the tags and the templates. The same cases run over real HTTPS
through the real transport in tests/integration/test_discovery_https.py.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.unit.discovery._cases import PAGES, Case, load_cases, serve
from trustd.shared.appc.identifier import ACIdentifier
from trustd.shared.errors import TransportError
from trustd.shared.insecure import Insecure
from trustd.unprivileged.discovery import DiscoveryError, discover_images, discover_pubkeys
from trustd.unprivileged.discovery._parse import parse_meta_tags
from trustd.unprivileged.transport import Response

CASES = load_cases()


class VectorServer:
    """Answers from the case's pages; records every URL asked for."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.requested: list[str] = []

    def __call__(self, url: str) -> Response:
        self.requested.append(url)
        host = urlsplit(url).hostname or ""
        sent = {"authorization": self.case.auth[host]} if host in self.case.auth else {}
        return serve(self.case, url, sent)


def test_all_thirteen_cases_are_loaded() -> None:
    assert len(CASES) == 13


@pytest.mark.parametrize("case", CASES, ids=[c.desc for c in CASES])
def test_discover_images(case: Case) -> None:
    name = ACIdentifier(case.app)
    server = VectorServer(case)
    if not case.aci_ok:
        with pytest.raises(DiscoveryError, match=r"^discovery failed"):
            discover_images(name, case.labels, insecure=Insecure.NONE, fetcher=server)
        return
    got = discover_images(name, case.labels, insecure=Insecure.NONE, fetcher=server)
    assert got == case.aci


@pytest.mark.parametrize("case", CASES, ids=[c.desc for c in CASES])
def test_discover_pubkeys(case: Case) -> None:
    name = ACIdentifier(case.app)
    server = VectorServer(case)
    if not case.keys_ok:
        with pytest.raises(DiscoveryError, match=r"^discovery failed"):
            discover_pubkeys(name, insecure=Insecure.NONE, fetcher=server)
        return
    assert discover_pubkeys(name, insecure=Insecure.NONE, fetcher=server) == case.keys


@pytest.mark.parametrize("case", CASES, ids=[c.desc for c in CASES])
def test_no_case_depends_on_string_prefix_matching(case: Case) -> None:
    """appc applied a tag when ``app.startswith(prefix)``; trustd on whole segments.

    For every tag in every page of the vectors both rules agree, so passing these cases
    says nothing about the difference; test_match.py covers it.
    """
    name = ACIdentifier(case.app)
    for page in case.pages.values():
        for tag in parse_meta_tags((PAGES / page).read_text()):
            assert tag.applies_to(name) == case.app.startswith(tag.prefix)


def test_walk_goes_up_one_segment_at_a_time_over_https_only() -> None:
    case = next(c for c in CASES if c.desc == "walk up to root")
    server = VectorServer(case)
    discover_images(ACIdentifier(case.app), case.labels, insecure=Insecure.NONE, fetcher=server)
    assert server.requested == [
        "https://example.com/myapp/foobar?ac-discovery=1",
        "https://example.com/myapp?ac-discovery=1",
        "https://example.com?ac-discovery=1",
    ]


def test_failed_walk_reports_every_url_and_why() -> None:
    case = next(c for c in CASES if c.desc == "tags only on an unrelated path")
    server = VectorServer(case)
    with pytest.raises(DiscoveryError) as info:
        discover_pubkeys(ACIdentifier(case.app), insecure=Insecure.NONE, fetcher=server)
    err = info.value
    assert isinstance(err, TransportError)
    assert [a.url for a in err.attempts] == server.requested
    assert len(err.attempts) == 4
    assert all(a.reason == "expected a 200 OK got 404" for a in err.attempts)
    assert "4 URLs tried" in err.message
    assert "--debug" in err.hint


def test_a_page_without_the_wanted_tag_is_an_attempt_with_rkts_reason() -> None:
    case = next(c for c in CASES if c.desc == "only pubkeys (meta03) at root: aci fails")
    server = VectorServer(case)
    with pytest.raises(DiscoveryError) as info:
        discover_images(ACIdentifier(case.app), case.labels, insecure=Insecure.NONE, fetcher=server)
    reasons = [str(a) for a in info.value.attempts]
    assert reasons[-1] == (
        "https://example.com?ac-discovery=1: meta tag 'ac-discovery' not found on example.com"
    )

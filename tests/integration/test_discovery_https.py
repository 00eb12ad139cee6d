"""The discovery walk over real HTTPS: real server, real TLS checks, real transport.

Discovery URLs carry no port and name hosts we do not own (``https://example.com/...``),
so the fetcher handed to the walk is a thin wrapper around the real ``transport.fetch``
that only rewrites ``example.com`` to ``127.0.0.1:<port of the test server>``. Everything
else is production code: the certificate (issued by a trustme CA for example.com and
127.0.0.1) is verified against the trust store named by SSL_CERT_FILE, the discovery
limits apply, and headers are sent as given. The last test skips the rewrite entirely
and drives the default fetcher against port 443 when this process may bind it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import trustme

from tests._https import LOCAL_NAMES, LocalServer, reply
from tests.unit.discovery._cases import PAGES, Case, load_cases
from trustd.shared.appc.identifier import ACIdentifier
from trustd.shared.errors import TransportError
from trustd.shared.insecure import Insecure
from trustd.unprivileged.discovery import (
    ACIEndpoint,
    DiscoveryError,
    Fetcher,
    discover_images,
    discover_pubkeys,
)
from trustd.unprivileged.transport import DISCOVERY_LIMITS, Response, fetch

CASES = load_cases()


def to_local(
    ports: Mapping[str, int], insecure: Insecure, headers: Mapping[str, str] | None = None
) -> Fetcher:
    """The real transport, with example.com rewritten to 127.0.0.1:<port for the scheme>."""

    def get(url: str) -> Response:
        parts = urlsplit(url)
        assert parts.hostname == "example.com", url
        netloc = f"127.0.0.1:{ports[parts.scheme]}"
        local = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
        return fetch(local, limits=DISCOVERY_LIMITS, insecure=insecure, headers=headers)

    return get


def serve_case(srv: LocalServer, case: Case) -> None:
    for path, page in case.pages.items():
        body = (PAGES / page).read_bytes()
        srv.routes[path or "/"] = reply(body, headers={"Content-Type": "text/html"})


@pytest.mark.parametrize("case", CASES, ids=[c.desc for c in CASES])
def test_vector_cases_over_real_https(https_server: LocalServer, case: Case) -> None:
    serve_case(https_server, case)
    headers = {"Authorization": case.auth["example.com"]} if case.auth else None
    get = to_local({"https": https_server.port}, Insecure.NONE, headers)
    name = ACIdentifier(case.app)
    if case.aci_ok:
        assert discover_images(name, case.labels, insecure=Insecure.NONE, fetcher=get) == case.aci
    else:
        with pytest.raises(DiscoveryError):
            discover_images(name, case.labels, insecure=Insecure.NONE, fetcher=get)
    if case.keys_ok:
        assert discover_pubkeys(name, insecure=Insecure.NONE, fetcher=get) == case.keys
    else:
        with pytest.raises(DiscoveryError):
            discover_pubkeys(name, insecure=Insecure.NONE, fetcher=get)
    if case.auth:
        assert all(
            r.headers["authorization"] == case.auth["example.com"] for r in https_server.recorded
        )


def test_walk_requests_each_level_with_the_discovery_query(https_server: LocalServer) -> None:
    case = next(c for c in CASES if c.desc == "walk up to root")
    serve_case(https_server, case)
    get = to_local({"https": https_server.port}, Insecure.NONE)
    discover_pubkeys(ACIdentifier(case.app), insecure=Insecure.NONE, fetcher=get)
    assert [r.path for r in https_server.recorded] == [
        "/myapp/foobar?ac-discovery=1",
        "/myapp?ac-discovery=1",
        "/?ac-discovery=1",
    ]


def test_untrusted_server_is_a_failed_attempt_not_a_result(trusted: Path) -> None:
    stranger = trustme.CA()  # not in SSL_CERT_FILE
    with LocalServer(tls=stranger.issue_cert(*LOCAL_NAMES)) as srv:
        serve_case(srv, CASES[0])
        get = to_local({"https": srv.port}, Insecure.NONE)
        with pytest.raises(DiscoveryError) as info:
            discover_pubkeys(ACIdentifier("example.com/myapp"), insecure=Insecure.NONE, fetcher=get)
    assert len(info.value.attempts) == 2
    assert all("could not be verified" in a.reason for a in info.value.attempts)


def test_insecure_http_falls_back_to_plain_http_per_level(https_server: LocalServer) -> None:
    """https answers 404 everywhere; the plain http server holds the page."""
    with LocalServer() as plain:
        plain.routes["/myapp"] = reply((PAGES / "meta03.html").read_bytes())
        get = to_local({"https": https_server.port, "http": plain.port}, Insecure.HTTP)
        keys = discover_pubkeys(
            ACIdentifier("example.com/myapp"), insecure=Insecure.HTTP, fetcher=get
        )
    assert keys == ["https://example.com/pubkeys.gpg"]
    assert [r.path for r in https_server.recorded] == ["/myapp?ac-discovery=1"]


def test_default_fetcher_is_the_real_transport(ca: Any, trusted: Path) -> None:
    """No rewrite: ``localhost/app`` makes the walk ask https://localhost/app (port 443)."""
    try:
        srv = LocalServer(tls=ca.issue_cert(*LOCAL_NAMES), port=443)
    except OSError as exc:
        pytest.skip(f"cannot bind 127.0.0.1:443 here ({exc.strerror})")
    page = b'<meta name="ac-discovery" content="localhost/app https://localhost/{name}.{ext}">'
    with srv:
        srv.routes["/app"] = reply(page)
        got = discover_images(ACIdentifier("localhost/app"), {}, insecure=Insecure.NONE)
        with pytest.raises(DiscoveryError) as info:
            discover_pubkeys(ACIdentifier("localhost/app"), insecure=Insecure.NONE)
    assert got == [
        ACIEndpoint(
            "https://localhost/localhost/app.aci", "https://localhost/localhost/app.aci.asc"
        )
    ]
    assert isinstance(info.value, TransportError)
    assert [str(a) for a in info.value.attempts] == [
        "https://localhost/app?ac-discovery=1: meta tag 'ac-discovery-pubkeys' not found on "
        "localhost/app",
        "https://localhost?ac-discovery=1: expected a 200 OK got 404",
    ]

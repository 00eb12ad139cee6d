"""The transport's fetch against real HTTP(S) servers on 127.0.0.1 (tests/_https.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests._https import (
    LOCAL_NAMES,
    LocalServer,
    drip,
    echo_headers,
    redirect,
    reply,
    silent_listener,
    stall,
)
from trustd.shared.errors import TransportError, UserError
from trustd.shared.insecure import Insecure
from trustd.unprivileged.transport import DISCOVERY_LIMITS, KEY_LIMITS, Limits, fetch

FAST = Limits(max_bytes=1024, connect_timeout=0.5, total_timeout=0.8, max_redirects=3)


def test_success_returns_status_headers_body_and_final_url(https_server: LocalServer) -> None:
    https_server.routes["/key"] = reply(b"KEY", headers={"X-Thing": "1"})
    resp = fetch(https_server.url("/key"), limits=FAST, insecure=Insecure.NONE)
    assert (resp.status, resp.body, resp.url) == (200, b"KEY", https_server.url("/key"))
    assert resp.headers["x-thing"] == "1"
    assert resp.headers["content-length"] == "3"


def test_non_2xx_is_returned_not_raised(https_server: LocalServer) -> None:
    resp = fetch(https_server.url("/missing"), limits=FAST, insecure=Insecure.NONE)
    assert resp.status == 404


def test_headers_are_read_only(https_server: LocalServer) -> None:
    https_server.routes["/"] = reply(b"")
    resp = fetch(https_server.url("/"), limits=FAST, insecure=Insecure.NONE)
    with pytest.raises(TypeError):
        resp.headers["x"] = "y"  # type: ignore[index]


def test_body_exactly_at_cap_is_accepted(https_server: LocalServer) -> None:
    https_server.routes["/full"] = reply(b"x" * FAST.max_bytes, content_length=False)
    resp = fetch(https_server.url("/full"), limits=FAST, insecure=Insecure.NONE)
    assert len(resp.body) == FAST.max_bytes


@pytest.mark.parametrize(
    ("content_length", "says"),
    [(True, "announces 1025 bytes"), (False, "sent more than 1024 bytes")],
    ids=["declared", "streamed"],
)
def test_body_over_cap_is_refused(
    https_server: LocalServer, content_length: bool, says: str
) -> None:
    https_server.routes["/big"] = reply(b"x" * 1025, content_length=content_length)
    with pytest.raises(TransportError, match="1024-byte cap") as info:
        fetch(https_server.url("/big"), limits=FAST, insecure=Insecure.NONE)
    assert says in info.value.message
    assert info.value.hint


def test_declared_length_over_cap_is_refused_before_the_body_arrives(
    https_server: LocalServer,
) -> None:
    """The server sends the headers and then no byte at all: a client that waited for the body
    would end in a timeout, so the refusal's own words show it refused on the header."""
    https_server.routes["/huge"] = drip(30, declared_length=10**12)
    with pytest.raises(TransportError, match="announces 1000000000000 bytes"):
        fetch(https_server.url("/huge"), limits=FAST, insecure=Insecure.NONE)


def test_slow_drip_body_hits_the_total_timeout(https_server: LocalServer) -> None:
    """Each byte arrives well within any per-read timeout; only the total timeout stops it
    (the message names which limit fired: no wall-clock threshold in the test)."""
    https_server.routes["/drip"] = drip(0.05)
    limits = Limits(max_bytes=10**6, connect_timeout=0.5, total_timeout=0.6)
    with pytest.raises(TransportError, match=r"within 0\.6 s"):
        fetch(https_server.url("/drip"), limits=limits, insecure=Insecure.NONE)


def test_server_that_never_answers_times_out(https_server: LocalServer) -> None:
    https_server.routes["/stall"] = stall()
    with pytest.raises(TransportError, match=r"0\.8 s") as info:
        fetch(https_server.url("/stall"), limits=FAST, insecure=Insecure.NONE)
    assert info.value.hint


def test_tls_handshake_that_never_completes_hits_the_connect_timeout(trusted: Path) -> None:
    limits = Limits(max_bytes=1024, connect_timeout=0.3, total_timeout=5)
    with silent_listener() as port, pytest.raises(TransportError) as info:
        fetch(f"https://127.0.0.1:{port}/", limits=limits, insecure=Insecure.NONE)
    assert "timed out after 0.3 s connecting to 127.0.0.1" in info.value.message


def test_untrusted_certificate_is_refused(ca: Any, trusted: Path) -> None:
    stranger = trustme.CA()  # not in SSL_CERT_FILE
    with LocalServer(tls=stranger.issue_cert(*LOCAL_NAMES)) as srv:
        srv.routes["/"] = reply(b"secret")
        with pytest.raises(TransportError, match="could not be verified") as info:
            fetch(srv.url("/"), limits=FAST, insecure=Insecure.NONE)
    assert "--insecure-options=tls" in info.value.hint


def test_untrusted_certificate_is_accepted_with_insecure_tls(ca: Any, trusted: Path) -> None:
    stranger = trustme.CA()
    with LocalServer(tls=stranger.issue_cert(*LOCAL_NAMES)) as srv:
        srv.routes["/"] = reply(b"ok")
        resp = fetch(srv.url("/"), limits=FAST, insecure=Insecure.TLS)
    assert resp.body == b"ok"


def test_certificate_for_another_name_is_refused(ca: Any, trusted: Path) -> None:
    with LocalServer(tls=ca.issue_cert("example.com")) as srv:
        srv.routes["/"] = reply(b"ok")
        with pytest.raises(TransportError, match="could not be verified"):
            fetch(srv.url("/"), limits=FAST, insecure=Insecure.NONE)


def test_plain_http_is_refused_without_insecure_http(http_server: LocalServer) -> None:
    http_server.routes["/"] = reply(b"ok")
    with pytest.raises(UserError, match="refusing plain HTTP") as info:
        fetch(http_server.url("/"), limits=FAST, insecure=Insecure.NONE)
    assert "--insecure-options=http" in info.value.hint
    assert http_server.recorded == []  # refused before any byte went out


def test_plain_http_is_allowed_with_insecure_http(http_server: LocalServer) -> None:
    http_server.routes["/"] = reply(b"ok")
    resp = fetch(http_server.url("/"), limits=FAST, insecure=Insecure.HTTP)
    assert resp.body == b"ok"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "example.com/x",
        "https:///nohost",
        "https://user:pw@example.com/",
        "https://example.com:99999/",
        "https://example.com/a b",
        "https://example.com/\r\nX-Injected: 1",
    ],
)
def test_unusable_urls_are_user_errors(url: str) -> None:
    with pytest.raises(UserError):
        fetch(url, limits=FAST, insecure=Insecure.ALL)


def test_redirects_are_followed_and_final_url_reported(https_server: LocalServer) -> None:
    https_server.routes["/a"] = redirect("/b", status=301)
    https_server.routes["/b"] = redirect(https_server.url("/c"), status=307)
    https_server.routes["/c"] = reply(b"here")
    resp = fetch(https_server.url("/a"), limits=FAST, insecure=Insecure.NONE)
    assert (resp.body, resp.url) == (b"here", https_server.url("/c"))


def test_redirects_up_to_the_cap_are_followed(https_server: LocalServer) -> None:
    for n in range(FAST.max_redirects):
        https_server.routes[f"/{n}"] = redirect(f"/{n + 1}")
    https_server.routes[f"/{FAST.max_redirects}"] = reply(b"end")
    resp = fetch(https_server.url("/0"), limits=FAST, insecure=Insecure.NONE)
    assert resp.body == b"end"


def test_redirect_loop_stops_at_the_cap(https_server: LocalServer) -> None:
    https_server.routes["/loop"] = redirect("/loop")
    with pytest.raises(TransportError, match="stopped after 3 redirects") as info:
        fetch(https_server.url("/loop"), limits=FAST, insecure=Insecure.NONE)
    assert info.value.hint
    assert len(https_server.recorded) == FAST.max_redirects + 1


def test_https_to_http_downgrade_is_refused(
    https_server: LocalServer, http_server: LocalServer
) -> None:
    http_server.routes["/plain"] = reply(b"plain")
    https_server.routes["/down"] = redirect(http_server.url("/plain"))
    with pytest.raises(TransportError, match="refusing the downgrade") as info:
        fetch(https_server.url("/down"), limits=FAST, insecure=Insecure.NONE)
    assert "--insecure-options=http" in info.value.hint
    assert http_server.recorded == []


def test_https_to_http_downgrade_is_followed_with_insecure_http(
    https_server: LocalServer, http_server: LocalServer
) -> None:
    http_server.routes["/plain"] = reply(b"plain")
    https_server.routes["/down"] = redirect(http_server.url("/plain"))
    resp = fetch(https_server.url("/down"), limits=FAST, insecure=Insecure.HTTP)
    assert resp.body == b"plain"


def test_redirect_to_another_scheme_is_a_transport_error(https_server: LocalServer) -> None:
    https_server.routes["/ftp"] = redirect("ftp://127.0.0.1/x")
    with pytest.raises(TransportError, match="redirected to an unusable URL"):
        fetch(https_server.url("/ftp"), limits=FAST, insecure=Insecure.ALL)


def _sent_headers(body: bytes) -> dict[str, str]:
    parsed = json.loads(body)
    assert isinstance(parsed, dict)
    return parsed


def test_authorization_is_kept_on_same_host_redirect(https_server: LocalServer) -> None:
    https_server.routes["/r"] = redirect("/echo")
    https_server.routes["/echo"] = echo_headers()
    auth = {"Authorization": "Basic dXNlcjpwdw=="}
    resp = fetch(https_server.url("/r"), limits=FAST, insecure=Insecure.NONE, headers=auth)
    assert _sent_headers(resp.body)["authorization"] == "Basic dXNlcjpwdw=="


@pytest.mark.parametrize("spelling", ["Authorization", "authorization", "AUTHORIZATION"])
def test_authorization_is_dropped_on_cross_host_redirect(
    https_server: LocalServer, spelling: str
) -> None:
    """127.0.0.1 and localhost are the same machine but two hosts to the client."""
    https_server.routes["/r"] = redirect(https_server.url("/echo", host="localhost"))
    https_server.routes["/echo"] = echo_headers()
    auth = {spelling: "Basic dXNlcjpwdw==", "X-Other": "kept"}
    resp = fetch(https_server.url("/r"), limits=FAST, insecure=Insecure.NONE, headers=auth)
    sent = _sent_headers(resp.body)
    assert "authorization" not in sent
    assert sent["x-other"] == "kept"
    assert resp.url == https_server.url("/echo", host="localhost")
    assert https_server.recorded[0].headers["authorization"] == "Basic dXNlcjpwdw=="


def test_connection_refused_is_a_transport_error(trusted: Path) -> None:
    with silent_listener() as port:
        pass  # the port is closed again: nobody listens there now
    with pytest.raises(TransportError, match="failed") as info:
        fetch(f"https://127.0.0.1:{port}/", limits=FAST, insecure=Insecure.NONE)
    assert info.value.hint


def test_module_limits_are_bounded() -> None:
    assert KEY_LIMITS.max_bytes == DISCOVERY_LIMITS.max_bytes == 1024 * 1024
    assert (KEY_LIMITS.connect_timeout, KEY_LIMITS.total_timeout) == (30, 120)
    assert DISCOVERY_LIMITS.connect_timeout == 20
    assert KEY_LIMITS.max_redirects == 10

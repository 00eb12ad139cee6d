"""Proxies from the environment, against a real forwarding proxy and the real HTTPS server
on 127.0.0.1 (issue #15 part 5). The rules follow curl and requests (transport/_proxy.py)."""

from __future__ import annotations

import base64

import pytest

from tests._https import LocalServer, reply
from tests._proxy import LocalProxy
from trustd.shared.errors import TransportError, UserError
from trustd.shared.insecure import Insecure
from trustd.unprivileged.transport import Limits, fetch
from trustd.unprivileged.transport._proxy import bypassed, proxy_for

FAST = Limits(max_bytes=1024, connect_timeout=2, total_timeout=5)


def test_https_goes_through_a_connect_tunnel_with_the_certificate_checked(
    https_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    https_server.routes["/key"] = reply(b"KEY")
    with LocalProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        resp = fetch(
            https_server.url("/key", host="localhost"), limits=FAST, insecure=Insecure.NONE
        )
        assert resp.body == b"KEY"
        assert [(s.method, s.target) for s in proxy.seen] == [
            ("CONNECT", f"localhost:{https_server.port}")
        ]
    assert [r.path for r in https_server.recorded] == ["/key"]  # origin-form inside the tunnel


def test_plain_http_sends_the_absolute_url_with_proxy_credentials(
    http_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    http_server.routes["/a"] = reply(b"A")
    with LocalProxy(credentials="user:p@ss") as proxy:
        monkeypatch.setenv("http_proxy", proxy.url.replace("://", "://user:p%40ss@"))
        resp = fetch(http_server.url("/a?x=1"), limits=FAST, insecure=Insecure.HTTP)
        assert resp.body == b"A"
        (seen,) = proxy.seen
    assert (seen.method, seen.target) == ("GET", f"http://127.0.0.1:{http_server.port}/a?x=1")
    assert seen.authorization == "Basic " + base64.b64encode(b"user:p@ss").decode()
    assert "proxy-authorization" not in http_server.recorded[0].headers  # not passed on


def test_tunnel_credentials_are_sent_and_a_refusal_names_the_proxy(
    https_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    https_server.routes["/k"] = reply(b"K")
    with LocalProxy(credentials="u:pw") as proxy:
        monkeypatch.setenv("https_proxy", proxy.url.replace("://", "://u:pw@"))
        assert fetch(https_server.url("/k"), limits=FAST, insecure=Insecure.NONE).body == b"K"
        monkeypatch.setenv("https_proxy", proxy.url)
        with pytest.raises(TransportError) as err:
            fetch(https_server.url("/k"), limits=FAST, insecure=Insecure.NONE)
    assert f"proxy 127.0.0.1:{proxy.port} (from https_proxy)" in err.value.message
    assert "407" in err.value.message and "https_proxy" in err.value.hint


def test_no_proxy_reaches_the_server_directly(
    https_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    https_server.routes["/k"] = reply(b"K")
    with LocalProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "example.org, 127.0.0.0/8")
        assert fetch(https_server.url("/k"), limits=FAST, insecure=Insecure.NONE).body == b"K"
        assert proxy.seen == []


ENV_CASES = [
    # environment, scheme, host, port -> proxy "host:port" or None
    ({"https_proxy": "http://p:3128"}, "https", "a.com", 443, "p:3128"),
    ({"HTTPS_PROXY": "p:3128"}, "https", "a.com", 443, "p:3128"),  # no scheme: http://
    ({"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:2"}, "https", "a", 443, "low:1"),
    ({"https_proxy": "http://p:1"}, "http", "a.com", 80, None),  # per scheme
    ({"http_proxy": "http://p:1"}, "http", "a.com", 80, "p:1"),
    ({"HTTP_PROXY": "http://p:1"}, "http", "a.com", 80, "p:1"),
    ({"HTTP_PROXY": "http://p:1", "REQUEST_METHOD": "GET"}, "http", "a.com", 80, None),  # httpoxy
    ({"http_proxy": "http://p:1", "REQUEST_METHOD": "GET"}, "http", "a.com", 80, "p:1"),
    ({"ALL_PROXY": "http://all:9"}, "https", "a.com", 443, "all:9"),
    ({"https_proxy": "http://p"}, "https", "a.com", 443, "p:1080"),  # curl's default port
    ({"https_proxy": ""}, "https", "a.com", 443, None),
    ({"https_proxy": "http://p:1", "no_proxy": "*"}, "https", "a.com", 443, None),
    ({"https_proxy": "http://p:1", "no_proxy": "a.com"}, "https", "www.a.com", 443, None),
    ({"https_proxy": "http://p:1", "no_proxy": ".a.com"}, "https", "a.com", 443, None),
    ({"https_proxy": "http://p:1", "no_proxy": "a.com"}, "https", "nota.com", 443, "p:1"),
    ({"https_proxy": "http://p:1", "NO_PROXY": "A.COM"}, "https", "a.com", 443, None),
    ({"https_proxy": "http://p:1", "no_proxy": "a.com:8443"}, "https", "a.com", 443, "p:1"),
    ({"https_proxy": "http://p:1", "no_proxy": "a.com:8443"}, "https", "a.com", 8443, None),
    ({"https_proxy": "http://p:1", "no_proxy": "10.0.0.0/8"}, "https", "10.1.2.3", 443, None),
    ({"https_proxy": "http://p:1", "no_proxy": "10.0.0.0/8"}, "https", "11.1.2.3", 443, "p:1"),
    ({"https_proxy": "http://p:1", "no_proxy": "::1"}, "https", "::1", 443, None),
    ({"https_proxy": "http://p:1"}, "https", "127.0.0.1", 443, "p:1"),  # loopback: no exception
    ({"https_proxy": "http://p:1"}, "https", "localhost", 443, "p:1"),
]


@pytest.mark.parametrize(("env", "scheme", "host", "port", "expected"), ENV_CASES)
def test_proxy_rules(
    env: dict[str, str], scheme: str, host: str, port: int, expected: str | None
) -> None:
    proxy = proxy_for(scheme, host, port, env)
    assert (None if proxy is None else f"{proxy.host}:{proxy.port}") == expected


def test_a_socks_or_https_proxy_is_refused_with_the_variable() -> None:
    for value in ("socks5://p:1080", "https://p:3128"):
        with pytest.raises(UserError) as err:
            proxy_for("https", "a.com", 443, {"HTTPS_PROXY": value})
        assert "HTTPS_PROXY" in err.value.message and "only http://" in err.value.message


def test_no_proxy_does_not_match_a_name_against_an_address_entry() -> None:
    assert not bypassed("example.com", 443, {"no_proxy": "10.0.0.0/8"})

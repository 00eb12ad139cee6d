"""Real local HTTP(S) servers for tests (CONVENTIONS 13: real parts, not mocks).

A :class:`LocalServer` is ``http.server`` on 127.0.0.1 with a random port, run in a thread,
optionally wrapped in TLS with a certificate issued by a ``trustme`` CA. Routes map a URL
path (query string ignored) to a handler; unknown paths answer 404. Every request is
recorded (path and lowercased headers) so tests can check what a client sent.

Usage::

    ca = trustme.CA()
    with LocalServer(tls=ca.issue_cert(*LOCAL_NAMES)) as srv:
        srv.routes["/a"] = reply(b"hello")
        trust_ca(monkeypatch, ca, tmp_path)      # SSL_CERT_FILE -> the CA bundle
        fetch(srv.url("/a"), ...)

This is a plain module rather than a conftest so that any test package can import it.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

#: Names every test certificate is valid for: two "hosts" on loopback, and example.com.
LOCAL_NAMES = ("127.0.0.1", "localhost", "example.com")

Handler = Callable[["_RequestHandler"], None]


@dataclass(frozen=True)
class Recorded:
    path: str
    headers: Mapping[str, str]


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: LocalServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up or refuse our certificate are expected here: stay quiet."""


class _RequestHandler(BaseHTTPRequestHandler):
    server: _HTTPServer

    def do_GET(self) -> None:
        owner = self.server.owner
        path = urlsplit(self.path).path
        headers = {k.lower(): v for k, v in self.headers.items()}
        owner.recorded.append(Recorded(self.path, headers))
        handler = owner.routes.get(path)
        if handler is None:
            self.send_error(404)
            return
        handler(self)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request log line."""


class LocalServer:
    """An HTTP server on 127.0.0.1 (HTTPS when ``tls`` is a trustme LeafCert)."""

    def __init__(self, tls: Any = None, port: int = 0) -> None:
        self.routes: dict[str, Handler] = {}
        self.recorded: list[Recorded] = []
        self.stop = threading.Event()
        self._httpd = _HTTPServer(("127.0.0.1", port), _RequestHandler)
        self._httpd.owner = self
        self.scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.configure_cert(ctx)
            self._httpd.socket = ctx.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False
            )
            self.scheme = "https"
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()  # releases handlers that stall or drip
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def reply(
    body: bytes,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    content_length: bool = True,
) -> Handler:
    """Answer with ``body``; without Content-Length the end of the body is the close."""

    def handle(req: _RequestHandler) -> None:
        req.send_response(status)
        for name, value in (headers or {}).items():
            req.send_header(name, value)
        if content_length:
            req.send_header("Content-Length", str(len(body)))
        req.send_header("Connection", "close")
        req.end_headers()
        req.wfile.write(body)

    return handle


def redirect(location: str, status: int = 302) -> Handler:
    return reply(b"", status=status, headers={"Location": location})


def echo_headers() -> Handler:
    """Answer with the request's headers as a JSON object (names lowercased)."""

    def handle(req: _RequestHandler) -> None:
        body = json.dumps({k.lower(): v for k, v in req.headers.items()}).encode()
        reply(body, headers={"Content-Type": "application/json"})(req)

    return handle


def drip(interval: float, declared_length: int | None = None) -> Handler:
    """Send headers at once, then one byte every ``interval`` seconds until stopped."""

    def handle(req: _RequestHandler) -> None:
        req.send_response(200)
        if declared_length is not None:
            req.send_header("Content-Length", str(declared_length))
        req.end_headers()
        stop = req.server.owner.stop
        try:
            while not stop.wait(interval):
                req.wfile.write(b"x")
                req.wfile.flush()
        except OSError:
            return  # the client gave up, as it should

    return handle


def stall() -> Handler:
    """Read the request and never answer (until the server stops)."""

    def handle(req: _RequestHandler) -> None:
        req.server.owner.stop.wait(30)

    return handle


@contextmanager
def silent_listener() -> Iterator[int]:
    """A TCP port that completes the TCP handshake (backlog) but never says a word."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]
    finally:
        sock.close()


def trust_ca(monkeypatch: pytest.MonkeyPatch, ca: Any, directory: Path) -> Path:
    """Make ``ca`` a trusted root for ``ssl.create_default_context`` via SSL_CERT_FILE."""
    bundle = directory / "trustme-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    return bundle

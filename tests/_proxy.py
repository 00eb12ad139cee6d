"""A small forwarding proxy on 127.0.0.1 for the tests (issue #15 part 5): CONNECT tunnels
for https and absolute-URI GETs for http, optional Basic credentials, and a record of every
request it saw, so a test can count them (zero included)."""

from __future__ import annotations

import base64
import contextlib
import select
import socket
import socketserver
import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Seen:
    method: str
    target: str
    authorization: str | None


@dataclass
class _State:
    credentials: str | None
    forward: bool = True  # False: count, then answer 502 (never leave the machine)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _read_head(conn: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _pipe(a: socket.socket, b: socket.socket) -> None:
    sockets = [a, b]
    while True:
        ready, _, _ = select.select(sockets, [], [], 5)
        if not ready:
            return
        for s in ready:
            data = s.recv(65536)
            if not data:
                return
            (b if s is a else a).sendall(data)


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        conn: socket.socket = self.request
        head, rest = _read_head(conn)
        if not head:
            return
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _version = request_line.split(" ", 2)
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(":") for line in header_lines)
        }
        state = self.server.state
        auth = headers.get("proxy-authorization")
        with state.lock:
            state.seen.append(Seen(method, target, auth))
        if state.credentials is not None:
            wanted = "Basic " + base64.b64encode(state.credentials.encode()).decode()
            if auth != wanted:
                conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
                return
        if not state.forward:
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            with socket.create_connection((host, int(port)), timeout=5) as upstream:
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    upstream.sendall(rest)
                _pipe(conn, upstream)
            return
        parts = urlsplit(target)  # a plain-http request: the absolute URL
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        kept = [
            line
            for line in header_lines
            if not line.lower().startswith(("proxy-authorization:", "proxy-connection:"))
        ]
        forwarded = "\r\n".join([f"{method} {path} HTTP/1.1", *kept, "Connection: close"])
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=5) as upstream:
            upstream.sendall(forwarded.encode("latin-1") + b"\r\n\r\n" + rest)
            _pipe(conn, upstream)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: _State

    def handle_error(self, request: object, client_address: object) -> None:
        """A client or upstream that hangs up is expected: stay quiet."""


class LocalProxy:
    """``with LocalProxy() as proxy:`` then ``proxy.url`` and ``proxy.seen``."""

    def __init__(self, credentials: str | None = None, *, forward: bool = True) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = _State(credentials, forward)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def seen(self) -> list[Seen]:
        with self._server.state.lock:
            return list(self._server.state.seen)

    def __enter__(self) -> LocalProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self._server.shutdown()
            self._server.server_close()
        self._thread.join(timeout=5)

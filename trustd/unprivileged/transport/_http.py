"""A bounded HTTP(S) GET over the standard library (CONVENTIONS 11).

Every request has a size cap and two clocks: ``connect_timeout`` bounds each socket
operation while connecting, ``total_timeout`` bounds the whole transfer, redirects and
slow-drip bodies included. The wall clock is enforced by a watchdog that shuts the socket
down when the deadline passes, because per-read socket timeouts alone let a server that
sends one byte just before each timeout keep us forever.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from contextlib import suppress
from types import MappingProxyType
from typing import Protocol
from urllib.parse import urljoin, urlsplit

from trustd import __version__
from trustd.shared._dataclass import frozen
from trustd.shared.errors import TransportError, UserError
from trustd.shared.fetch_settings import DEFAULT_MIN_RATE
from trustd.shared.insecure import Insecure
from trustd.unprivileged.transport._proxy import Proxy, proxy_for

_MiB = 1024 * 1024
_CHUNK = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HTTP_HINT = "pass --insecure-options=http to allow plain HTTP"


@frozen
class Limits:
    """Caps for one transfer: body bytes, seconds to connect, seconds overall, redirects."""

    max_bytes: int
    connect_timeout: float
    total_timeout: float
    max_redirects: int = 10
    idle_timeout: float | None = None  # longest silence mid-body (big downloads)
    min_rate: tuple[int, float] | None = None  # (bytes, seconds): the body's throughput floor


KEY_LIMITS = Limits(max_bytes=_MiB, connect_timeout=30, total_timeout=120)
DISCOVERY_LIMITS = Limits(max_bytes=_MiB, connect_timeout=20, total_timeout=20)
SIGNATURE_LIMITS = Limits(max_bytes=_MiB, connect_timeout=30, total_timeout=120)
#: A body slower than this, window after window, is a stall: ~1 KiB/s over each minute
#: (the default of fetch.d's ``minRate``, trustd/shared/fetch_settings.py).
MIN_RATE = DEFAULT_MIN_RATE
IMAGE_LIMITS = Limits(
    max_bytes=16 * 1024 * _MiB,
    connect_timeout=30,
    total_timeout=6 * 3600,
    idle_timeout=60,
    min_rate=MIN_RATE,
)


class Sink(Protocol):
    """Receives a 2xx body: ``begin`` once (status, announced length or None), then chunks."""

    def begin(self, status: int, length: int | None) -> None: ...

    def write(self, chunk: bytes, /) -> object: ...


@frozen
class Response:
    """What the server answered last (after redirects). ``headers`` keys are lowercase."""

    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes


@frozen
class _Target:
    url: str
    scheme: str
    host: str
    port: int
    path: str

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)

    @property
    def absolute(self) -> str:
        """The request target a proxy needs for plain HTTP: the URL without its fragment."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"


def _target(url: str, insecure: Insecure) -> _Target:
    """Parse and vet ``url``; raises UserError naming what is wrong with it."""
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise UserError(f"URL {url!r} contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UserError(f"URL {url!r} is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme == "http" and Insecure.HTTP not in insecure:
        raise UserError(f"refusing plain HTTP URL {url!r}", hint=_HTTP_HINT)
    if scheme not in ("https", "http"):
        raise UserError(
            f"URL {url!r} has scheme {scheme!r}; only https is supported",
            hint='use an "https://" URL',
        )
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise UserError(f"URL {url!r} must name a host and carry no credentials")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = 443 if scheme == "https" else 80
    return _Target(url, scheme, parts.hostname, port or default_port, path)


def _tls_context(insecure: Insecure) -> ssl.SSLContext:
    """The system trust store (honours ``SSL_CERT_FILE``), TLS 1.2 or later."""
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if Insecure.TLS in insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def speaks_tls(host: str, port: int, limits: Limits) -> bool:
    """Whether the server at ``host:port`` answers a TLS handshake, for a caller that may
    fall back to plain http (a registry's ping): False means an https request there would
    fail anyway. Through a proxy, True (the real request finds out).

    The probe's context trusts no CA, so its handshake can never complete and nothing but
    a ClientHello is sent: a server that presents a certificate speaks TLS (the real
    request then checks that certificate against the system store). Loading that store
    costs ~20 ms of CPU, which a plain-http registry then never pays (issue #12).
    Connecting and the whole handshake are each bounded by ``limits.connect_timeout``
    (CPython applies a socket's timeout to the handshake as one deadline).
    """
    if proxy_for("https", host, port) is not None:
        return True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False  # the handshake is refused at the chain already
    try:
        with (
            socket.create_connection((host, port), timeout=limits.connect_timeout) as sock,
            ctx.wrap_socket(sock, server_hostname=host) as tls,
        ):
            tls.getpeercert()  # not reached: no CA, no verified chain
    except ssl.SSLCertVerificationError:
        return True
    except OSError:
        return False
    return True  # defensive: a handshake that completed is TLS


def _connection(
    target: _Target, limits: Limits, insecure: Insecure, deadline: float, proxy: Proxy | None
) -> http.client.HTTPConnection:
    """A connection to the server, or to the proxy: https goes through a CONNECT tunnel
    (TLS with the server end to end, the certificate checked for the server's name), plain
    http sends the absolute URL to the proxy."""
    timeout = max(min(limits.connect_timeout, deadline - time.monotonic()), 0.001)
    host, port = (proxy.host, proxy.port) if proxy else (target.host, target.port)
    if target.scheme == "https":
        ctx = _tls_context(insecure)
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=ctx
        )
        if proxy is not None:
            auth = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else None
            conn.set_tunnel(target.host, target.port, headers=auth)
        return conn
    return http.client.HTTPConnection(host, port, timeout=timeout)


class _Watchdog:
    """Shuts the connected socket down when the deadline passes; ``fired`` says it did.

    The socket is handed over with :meth:`arm` right after connecting: http.client drops
    its own reference once a close-delimited response starts, but the reader still blocks
    on it.
    """

    def __init__(self, seconds: float) -> None:
        self.fired = threading.Event()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._timer = threading.Timer(max(seconds, 0.0), self._abort)
        self._timer.daemon = True

    def arm(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
        if self.fired.is_set():
            self._abort()

    def _abort(self) -> None:
        self.fired.set()
        with self._lock:
            sock = self._sock
        if sock is not None:
            with suppress(OSError):  # already closed: the transfer ended on its own
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


def _read_body(
    resp: http.client.HTTPResponse, target: _Target, limits: Limits, sink: Sink | None
) -> bytes:
    """Read the body, refusing it as soon as it would pass ``limits.max_bytes``.

    With a ``sink``, a 2xx body goes to the sink as it arrives and b"" is returned; the
    sink may see the (at most one-byte-long) chunk that passes the cap before it is refused.
    """
    cap = limits.max_bytes
    announced = resp.length
    if announced is not None and announced > cap:
        raise _too_big(target, f"announces {announced} bytes", cap)
    streaming = sink is not None and 200 <= resp.status < 300
    if streaming and sink is not None:
        sink.begin(resp.status, resp.length)
    chunks: list[bytes] = []
    total = 0
    floor = _Floor(target, limits.min_rate)
    while chunk := resp.read1(min(_CHUNK, cap + 1 - total)):
        total += len(chunk)
        if streaming and sink is not None:
            sink.write(chunk)  # first: a sink that knows the size may name the overflow
        if total > cap:
            raise _too_big(target, f"sent more than {cap} bytes", cap)
        floor.count(len(chunk))
        if not streaming:
            chunks.append(chunk)
    if announced is not None and total < announced:  # read1 returns b"" at an early close
        raise TransportError(
            f"{target.url}: the connection closed after {total} of the {announced} bytes "
            "the server announced",
            hint="the transfer was cut short; fetch again (a download resumes where it can)",
        )
    return b"".join(chunks)


class _Floor:
    """The minimum-throughput rule: every full window of ``seconds`` must bring ``bytes``.

    A server that trickles (one byte a second, never silent long enough for the idle clock)
    is cut off after one window instead of holding the fetch for the whole total timeout.
    """

    def __init__(self, target: _Target, rate: tuple[int, float] | None) -> None:
        self.target, self.rate = target, rate
        self.start = time.monotonic()
        self.got = 0

    def count(self, n: int) -> None:
        if self.rate is None:
            return
        self.got += n
        need, window = self.rate
        now = time.monotonic()
        if now - self.start < window:
            return
        if self.got < need:
            raise TransportError(
                f"{self.target.url} sent {self.got} bytes in {now - self.start:.3g} s, under "
                f"the minimum throughput of {need} bytes per {window:g} s",
                hint="the server is trickling data; try again later or from another mirror",
            )
        self.start, self.got = now, 0


def _too_big(target: _Target, what: str, cap: int) -> TransportError:
    return TransportError(
        f"{target.url} {what}, over the {cap}-byte cap",
        hint="the server is misconfigured or hostile; the cap guards against memory exhaustion",
    )


def _request(
    target: _Target,
    headers: Mapping[str, str],
    limits: Limits,
    insecure: Insecure,
    deadline: float,
    *,
    sink: Sink | None = None,
) -> Response:
    """One GET, no redirects. Maps every network failure to TransportError."""
    proxy = proxy_for(target.scheme, target.host, target.port)
    conn = _connection(target, limits, insecure, deadline, proxy)
    path, sent = target.path, dict(headers)
    if proxy is not None and target.scheme == "http":
        path = target.absolute
        if proxy.authorization:
            sent["Proxy-Authorization"] = proxy.authorization
    connected = False
    try:
        with _Watchdog(deadline - time.monotonic()) as dog:
            try:
                conn.connect()
                connected = True
                dog.arm(conn.sock)
                if conn.sock is not None:  # from here on: the overall clock, or the idle one
                    left = max(deadline - time.monotonic(), 0.001)
                    conn.sock.settimeout(min(left, limits.idle_timeout or left))
                conn.request("GET", path, headers=sent)
                resp = conn.getresponse()
                moved = resp.status in _REDIRECTS and resp.getheader("location") is not None
                body = b"" if moved else _read_body(resp, target, limits, sink)
            except (OSError, http.client.HTTPException) as exc:
                error = _network_error(target, limits, exc, connected, dog.fired.is_set())
                raise _via(error, proxy) from exc
        if dog.fired.is_set():  # the watchdog fired just as the transfer ended: still too slow
            raise _network_error(target, limits, TimeoutError(), connected, True)
    finally:
        conn.close()
    merged: dict[str, str] = {}
    for name, value in resp.getheaders():
        key = name.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    return Response(target.url, resp.status, MappingProxyType(merged), body)


def _network_error(
    target: _Target, limits: Limits, exc: BaseException, connected: bool, fired: bool
) -> TransportError:
    where = f"{target.host}:{target.port}"
    if fired:
        return TransportError(
            f"fetching {target.url} did not finish within {limits.total_timeout:g} s",
            hint="the server is slow or stalled; try again later",
        )
    if isinstance(exc, TimeoutError):
        limit = (
            (limits.idle_timeout or limits.total_timeout) if connected else (limits.connect_timeout)
        )
        phase = (
            "with no data from"
            if connected and limits.idle_timeout
            else ("waiting for" if connected else "connecting to")
        )
        return TransportError(
            f"timed out after {limit:g} s {phase} {where} ({target.url})",
            hint="check the network and that the host is up",
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TransportError(
            f"TLS certificate of {where} could not be verified: {exc.verify_message}",
            hint="check the system clock and CA bundle (SSL_CERT_FILE); "
            "--insecure-options=tls skips this check",
        )
    return TransportError(
        f"fetching {target.url} failed: {type(exc).__name__}: {exc}",
        hint="check the network and that the host is up",
    )


def _via(error: TransportError, proxy: Proxy | None) -> TransportError:
    """The failure, naming the proxy it went through (a refused CONNECT is the proxy's)."""
    if proxy is None:
        return error
    error.message = f"{error.message} (through {proxy.where})"
    if "Tunnel connection failed" in error.message:
        error.hint = f"the proxy refused the tunnel: check {proxy.variable} and no_proxy"
    return error


def _follow(current: _Target, location: str, insecure: Insecure) -> _Target:
    """The redirect target, refusing an https→http downgrade unless Insecure.HTTP."""
    nxt_url = urljoin(current.url, location)
    downgrade = current.scheme == "https" and urlsplit(nxt_url).scheme.lower() == "http"
    if downgrade and Insecure.HTTP not in insecure:
        raise TransportError(
            f"{current.url} redirected to plain HTTP {nxt_url}; refusing the downgrade",
            hint=_HTTP_HINT,
        )
    try:
        return _target(nxt_url, insecure)
    except UserError as exc:
        raise TransportError(f"{current.url} redirected to an unusable URL: {exc}") from None


def fetch(
    url: str,
    *,
    limits: Limits,
    insecure: Insecure,
    headers: Mapping[str, str] | None = None,
    sink: Sink | None = None,
) -> Response:
    """GET ``url`` within ``limits``; non-2xx answers are returned, not raised.

    With ``sink``, a 2xx body is streamed to it instead of being kept in ``Response.body``.

    Raises UserError for a URL we will not fetch, TransportError for network failures,
    caps, timeouts and bad redirects. ``Authorization`` is dropped when a redirect leaves
    the origin (scheme, host, port) it was given for.
    """
    target = _target(url, insecure)
    sent = {"User-Agent": f"trustd/{__version__}", "Accept-Encoding": "identity"}
    sent.update(headers or {})
    deadline = time.monotonic() + limits.total_timeout
    for _ in range(limits.max_redirects + 1):
        if time.monotonic() >= deadline:
            raise _network_error(target, limits, TimeoutError(), True, True)
        resp = _request(target, sent, limits, insecure, deadline, sink=sink)
        location = resp.headers.get("location")
        if resp.status not in _REDIRECTS or location is None:
            return resp
        nxt = _follow(target, location, insecure)
        if nxt.origin != target.origin:
            sent = {k: v for k, v in sent.items() if k.lower() != "authorization"}
        target = nxt
    raise TransportError(
        f"{url}: stopped after {limits.max_redirects} redirects",
        hint="the server redirects in a loop or too deep; report it to the site's owner",
    )

"""The attester's HTTPS server: a subset of Keylime's agent API (docs/adr/0014-keylime.md).

``GET /version`` -> ``{"code": 200, "status": "Success", "results": {"supported_version":
"2.1"}}``.

``GET /v2.1/quotes/integrity?nonce=<hex>&mask=<hex bitmask>`` -> ``results``: ``quote``
(``r<b64 TPMS_ATTEST>:<b64 TPMT_SIGNATURE>:<b64 tpm2-tools PCR file>``, Keylime's layout),
``hash_alg``, ``pubkey`` (the AK, PEM), ``mb_measurement_list`` (base64 firmware log, or
null), ``ima_measurement_list`` (IMA's ASCII log, or null), and trustd's own
``trustd_event_log`` (CEL-JSON), ``backend`` (what the attester claims) and
``measurement_pcr`` (always quoted, in addition to the mask).

Bounded: GET only, a request line of at most :data:`MAX_TARGET` bytes, no body, a
:data:`TIMEOUT` for the TLS handshake and for each read, one request at a time; root limits
the rate of quotes and refuses a nonce it has answered before.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import ssl
import threading
import urllib.parse
from typing import Any, BinaryIO

from trustd.shared._dataclass import frozen

MAX_TARGET = 2048
TIMEOUT = 10.0
API = "v2.1"
_HEX = re.compile(r"(?:[0-9a-fA-F]{2}){8,64}")
_MASK = re.compile(r"(0x)?[0-9a-fA-F]{1,6}")


class Bridge:
    """The challenge/answer pipes to root, one exchange at a time."""

    def __init__(self, challenges: BinaryIO, answers: BinaryIO) -> None:
        self.challenges, self.answers, self.lock = challenges, answers, threading.Lock()

    def ask(self, nonce: str, pcrs: list[int]) -> dict[str, Any]:
        with self.lock:
            self.challenges.write(json.dumps({"nonce": nonce, "pcrs": pcrs}).encode() + b"\n")
            self.challenges.flush()
            line = self.answers.readline()
        if not line:
            return {"status": 503, "error": "the quoter (root) has stopped"}
        answer: dict[str, Any] = json.loads(line)
        return answer


def mask_pcrs(mask: str) -> list[int] | None:
    if not _MASK.fullmatch(mask):
        return None
    value = int(mask, 16)
    return [i for i in range(24) if value >> i & 1] if value else None


@frozen
class Refusal:
    code: int
    message: str


def parse_target(target: str) -> tuple[str, list[int]] | Refusal:
    """The nonce and PCRs of ``/v2.1/quotes/integrity?nonce=..&mask=..``, or why not."""
    if len(target) > MAX_TARGET:
        return Refusal(414, f"request target longer than {MAX_TARGET} bytes")
    url = urllib.parse.urlsplit(target)
    if url.path != f"/{API}/quotes/integrity":
        return Refusal(404, f"not found: this attester serves /{API}/quotes/integrity")
    try:
        query = urllib.parse.parse_qs(url.query, strict_parsing=True, max_num_fields=8)
    except ValueError:
        return Refusal(400, "malformed query")
    nonce, mask = query.get("nonce", [""]), query.get("mask", [""])
    if len(nonce) != 1 or not _HEX.fullmatch(nonce[0]):
        return Refusal(400, "nonce must be 8 to 64 bytes in hex")
    pcrs = mask_pcrs(mask[0]) if len(mask) == 1 else None
    if pcrs is None:
        return Refusal(400, "mask must be a non-zero hex bitmask of PCRs 0-23")
    return nonce[0], pcrs


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "trustd-attester"
    sys_version = ""
    timeout = TIMEOUT
    bridge: Bridge

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, code: int, results: dict[str, Any] | None, status: str) -> None:
        body = json.dumps({"code": code, "status": status, "results": results or {}}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def do_GET(self) -> None:
        if self.headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in self.headers:
            self._reply(413, None, "a GET has no body")
            return
        if urllib.parse.urlsplit(self.path).path == "/version":
            self._reply(200, {"supported_version": API.lstrip("v")}, "Success")
            return
        parsed = parse_target(self.path)
        if isinstance(parsed, Refusal):
            self._reply(parsed.code, None, parsed.message)
            return
        answer = self.bridge.ask(*parsed)
        code = int(answer.pop("status", 500))
        if code != 200:
            self._reply(code, None, str(answer.get("error", "error")))
            return
        self._reply(200, answer, "Success")

    def _refuse(self) -> None:
        self._reply(405, None, "only GET")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _refuse


class AttesterServer(http.server.HTTPServer):
    """One connection at a time; the TLS handshake runs in the accept, under a timeout."""

    def __init__(self, listener: socket.socket, context: ssl.SSLContext, bridge: Bridge) -> None:
        handler = type("BoundHandler", (Handler,), {"bridge": bridge})
        super().__init__(listener.getsockname()[:2], handler, bind_and_activate=False)
        self.socket.close()
        self.socket = listener
        self.context = context

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        sock.settimeout(TIMEOUT)
        try:
            return self.context.wrap_socket(sock, server_side=True), addr
        except (OSError, ssl.SSLError):
            sock.close()
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that broke off or failed the TLS handshake: nothing to report


def tls_context(cert: str, key: str, client_ca: str | None) -> ssl.SSLContext:
    """TLS 1.2+ server context from PEM text (through memfds: ssl loads chains from paths)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    fds = []
    try:
        for text in (cert, key):
            fd = os.memfd_create("tls", os.MFD_CLOEXEC)
            os.write(fd, text.encode())
            fds.append(fd)
        context.load_cert_chain(f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}")
    finally:
        for fd in fds:
            os.close(fd)
    if client_ca is not None:
        context.load_verify_locations(cadata=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context

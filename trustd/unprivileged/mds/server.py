"""appc App Container Metadata Service (spec/ace.md), one per pod.

rkt ran one host daemon that pods reached over their CNI network. Without CNI a pod has
only loopback, so trustd's pod init (which lives in the pod's network namespace) serves the
endpoints on 127.0.0.1:18112 there, for that pod only. The path starts with a 256-bit token
(``AC_METADATA_URL``); a request without it gets 404. The HMAC identity endpoint signs
``uuid || content`` with HMAC-SHA512 under a host-wide key kept root-only under
``<dir>/mds/hmac.key``, so one pod can verify another's signature. The token is never
logged, recorded or measured.

This code never runs as root: the pod's init binds the socket, drops a child to the
``rkt-mds`` account with no capabilities and execs ``python -I -m trustd.unprivileged.mds``
(trustd/privileged/executor/_mds.py), which gets the socket and its metadata as fds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from trustd.shared._dataclass import frozen
from trustd.unprivileged.mds import _admit
from trustd.unprivileged.mds._admit import Admission, CappedReader, TooLarge, refuse

MDS_PORT = 18112
TEXT = "text/plain; charset=us-ascii"
JSON = "application/json"
MAX_FORM = 1 << 20


@frozen
class PodMetadata:
    uuid: str
    pod_manifest: dict[str, Any]
    image_manifests: dict[str, bytes]  # app name -> original image manifest
    image_ids: dict[str, str]  # app name -> image ID
    key: bytes
    token: str

    @classmethod
    def new(
        cls,
        uuid: str,
        pod_manifest: dict[str, Any],
        images: dict[str, tuple[bytes, str]],
        key: bytes,
    ) -> PodMetadata:
        return cls(
            uuid,
            pod_manifest,
            {a: m for a, (m, _) in images.items()},
            {a: i for a, (_, i) in images.items()},
            key,
            secrets.token_urlsafe(32),
        )

    def sign(self, content: bytes, uuid: str | None = None) -> str:
        mac = hmac.new(self.key, (uuid or self.uuid).encode() + content, hashlib.sha512)
        return base64.b64encode(mac.digest()).decode()


def _app_annotations(meta: PodMetadata, app: str) -> list[Any]:
    image = json.loads(meta.image_manifests[app])
    apps: list[dict[str, Any]] = meta.pod_manifest.get("apps", [])
    pod_app: dict[str, Any] = next((a for a in apps if a["name"] == app), {})
    return [*image.get("annotations", []), *pod_app.get("annotations", [])]


def _get(meta: PodMetadata, parts: list[str]) -> tuple[int, str, bytes]:
    pod: dict[tuple[str, ...], Any] = {
        ("pod", "uuid"): lambda: (TEXT, meta.uuid.encode()),
        ("pod", "manifest"): lambda: (JSON, json.dumps(meta.pod_manifest).encode()),
        ("pod", "annotations"): lambda: (
            JSON,
            json.dumps(meta.pod_manifest.get("annotations", [])).encode(),
        ),
    }
    if (found := pod.get(tuple(parts))) is not None:
        return 200, *found()
    if len(parts) < 3 or parts[0] != "apps" or parts[1] not in meta.image_ids:
        return 404, TEXT, b"not found"
    app, rest = parts[1], tuple(parts[2:])
    answers: dict[tuple[str, ...], Any] = {
        ("annotations",): lambda: (JSON, json.dumps(_app_annotations(meta, app)).encode()),
        ("image", "manifest"): lambda: (JSON, meta.image_manifests[app]),
        ("image", "id"): lambda: (TEXT, meta.image_ids[app].encode()),
    }
    answer = answers.get(rest)
    return (200, *answer()) if answer else (404, TEXT, b"not found")


def _post(
    meta: PodMetadata, parts: list[str], form: dict[str, list[str]]
) -> tuple[int, str, bytes]:
    content = form.get("content", [""])[0].encode()
    if parts == ["pod", "hmac", "sign"]:
        return 200, TEXT, meta.sign(content).encode()
    if parts == ["pod", "hmac", "verify"]:
        uuid, sig = form.get("uuid", [""])[0], form.get("signature", [""])[0]
        ok = bool(uuid) and hmac.compare_digest(meta.sign(content, uuid), sig)
        return (200, TEXT, b"") if ok else (403, TEXT, b"signature check failed")
    return 404, TEXT, b"not found"


Lookup = Callable[[str, str], PodMetadata | None]  # (token, client address) -> the pod
_API = "acMetadata/v1"


def only(meta: PodMetadata) -> Lookup:
    """The in-pod service: one pod, found by its token alone (it listens in that pod)."""

    def lookup(token: str, _client: str) -> PodMetadata | None:
        return meta if hmac.compare_digest(token, meta.token) else None

    return lookup


def _handler(lookup: Lookup) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        meta: PodMetadata | None = None
        timeout = _admit.READ_TIMEOUT  # per socket operation; the whole connection: the deadline
        rfile: CappedReader  # type: ignore[assignment]

        def setup(self) -> None:
            super().setup()
            self.rfile = CappedReader(self.rfile)  # type: ignore[arg-type]

        def handle_one_request(self) -> None:
            try:
                super().handle_one_request()
            except TooLarge:
                self.close_connection = True  # written whole: the request line may be unread
                self.wfile.write(_admit.TOO_LARGE)
                self.wfile.flush()
                _admit.drain(self.connection)

        def _route(self) -> list[str] | None:
            """The path below the token, once the token (and the caller's address) names a
            registered pod; None (404) otherwise, the same for a wrong token or address."""
            token, _, rest = self.path.split("?", 1)[0].lstrip("/").partition("/")
            if not rest.startswith(_API + "/"):
                return None
            self.meta = lookup(token, str(self.client_address[0]))
            return rest[len(_API) :].strip("/").split("/") if self.meta else None

        def _send(self, status: int, ctype: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            parts = self._route()
            if parts is None or self.meta is None:
                self._send(404, TEXT, b"not found")
                return
            self._send(*_get(self.meta, parts))

        def do_POST(self) -> None:
            parts = self._route()
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if parts is None or self.meta is None or not 0 <= length <= MAX_FORM:
                self._send(404 if parts is None else 413, TEXT, b"refused")
                return
            self.rfile.allow(length)  # declared and within MAX_FORM: that much more
            form = parse_qs(self.rfile.read(length).decode(errors="replace"))
            self._send(*_post(self.meta, parts, form))

        def log_message(self, format: str, *args: object) -> None:
            """Never log: request paths carry the pod's token."""

    return Handler


class BoundedServer(ThreadingHTTPServer):
    """One handler thread per admitted connection; the rest refused at once (_admit.py)."""

    daemon_threads = True
    request_queue_size = 128  # as root's listen() for the daemon: a flood's SYNs wait less
    admission: Admission

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.admission.admit(request, str(client_address[0])):
            refuse(request)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.admission.release(request)  # before the close: the reaper holds no closed fd
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """No traceback (a request's path holds its pod's token): a client that went away
        or was ended at its deadline is nothing to report."""

    def server_close(self) -> None:
        self.admission.stop()
        super().server_close()


def _nobody(_client: str) -> bool:
    return False


def bounded(
    address: Any,
    lookup: Lookup,
    registered: Callable[[str], bool] = _nobody,
    *,
    bind: bool = True,
) -> BoundedServer:
    """The HTTP server with its admission and its reaper thread; ``registered``: whether an
    address is a registered pod's (their share of the connections is reserved)."""
    httpd = BoundedServer(address, _handler(lookup), bind_and_activate=bind)
    httpd.admission = Admission(registered)
    threading.Thread(target=httpd.admission.reap_forever, daemon=True).start()
    return httpd


def serve_on(
    listener: socket.socket, lookup: Lookup, registered: Callable[[str], bool] = _nobody
) -> BoundedServer:
    """An HTTP server on a socket that is bound and listening already."""
    httpd = bounded(listener.getsockname(), lookup, registered, bind=False)
    httpd.socket.close()
    httpd.socket = listener
    httpd.server_address = listener.getsockname()
    return httpd


class MetadataService:
    """Serve ``meta`` on 127.0.0.1 of the current network namespace, in a daemon thread."""

    def __init__(
        self, meta: PodMetadata, port: int = MDS_PORT, *, listener: socket.socket | None = None
    ) -> None:
        self.meta = meta
        if listener is None:
            self.httpd = bounded(("127.0.0.1", port), only(meta))
        else:  # a socket bound and listening already (by the pod's init)
            self.httpd = serve_on(listener, only(meta))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{self.meta.token}"

    def start(self) -> MetadataService:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

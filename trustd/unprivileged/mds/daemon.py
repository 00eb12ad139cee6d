"""``rkt metadata-service``: the appc metadata service as one unprivileged host daemon (rkt's).

It holds two listening sockets, taken from systemd's socket activation (``LISTEN_FDS`` and
``LISTEN_PID``, sd_listen_fds(3): fds from 3, the AF_UNIX one registers, the AF_INET one
serves HTTP) or handed over the same way by root's ``rkt metadata-service`` (which binds them,
drops to ``rkt-mds`` and execs this; trustd/privileged/executor/_mdsd.py):

* **registration**, a UNIX stream socket that only root can reach (0600 root, in a root-only
  directory, or systemd's ``SocketMode=0600``); every connection is checked again with
  ``SO_PEERCRED``: a peer that is not uid 0 is refused. One JSON request per connection:
  ``{"register": {"uuid", "ip", "pod_manifest", "apps": {name: {"manifest", "id"}}}}``
  answers ``{"token", "address", "port"}``; ``{"unregister": {"uuid"}}`` answers
  ``{"ok": true}``; ``{"pods": {}}`` answers ``{"pods": [uuid, ...]}``, the registered pods.
* **the appc endpoints**, ``http://<host side of the pod network>:18112/<token>/acMetadata/v1``:
  a request names a registered pod only with that pod's 256-bit token *and* from that pod's
  registered address; anything else is 404, whatever was wrong. The HMAC key is random per
  daemon start and lives only in its memory (rkt's): ``sign`` signs as the caller's pod,
  ``verify`` checks any pod's signature. Connections are bounded in number (overall, per
  address, and for addresses no registered pod has), in time and in size (_admit.py).

It never runs as root and makes itself non-dumpable before it creates the key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import os
import secrets
import socket
import struct
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from trustd.unprivileged.mds.server import PodMetadata, serve_on

SD_LISTEN_FDS_START = 3
MAX_REQUEST = 16 << 20
_UUID_CHARS = set("0123456789abcdef-")


class ActivationError(Exception):
    """The sockets the daemon was given are missing or not the two it needs."""


def listen_fds(environ: dict[str, str] | None = None) -> list[int]:
    """sd_listen_fds(3): the fds passed to this process (LISTEN_PID must be ours); the
    variables are removed so that no child takes them for its own."""
    env = os.environ if environ is None else environ
    pid, count = env.pop("LISTEN_PID", ""), env.pop("LISTEN_FDS", "")
    env.pop("LISTEN_FDNAMES", None)
    if not pid or not count:
        return []
    if not pid.isdigit() or int(pid) != os.getpid():
        return []  # meant for another process
    if not count.isdigit():
        raise ActivationError(f"LISTEN_FDS={count!r} is not a number")
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)))


def activated_sockets(fds: list[int]) -> tuple[socket.socket, socket.socket]:
    """(registration, http) among the passed fds, by address family."""
    register = http = None
    for fd in fds:
        sock = socket.socket(fileno=fd)
        if sock.family == socket.AF_UNIX and register is None:
            register = sock
        elif sock.family in (socket.AF_INET, socket.AF_INET6) and http is None:
            http = sock
        else:
            raise ActivationError(f"fd {fd} is neither the registration nor the HTTP socket")
        sock.set_inheritable(False)
    if register is None or http is None:
        raise ActivationError(
            "the metadata service needs two sockets: a UNIX one to register pods and a TCP "
            "one to serve them (rkt-metadata.socket, or start it as root: rkt metadata-service)"
        )
    return register, http


@dataclass
class Registry:
    """The registered pods, by UUID and by token."""

    key: bytes = field(default_factory=lambda: secrets.token_bytes(64))
    pods: dict[str, tuple[PodMetadata, str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # How many registered pods have each address: has_address runs for every connection the
    # HTTP side accepts, so it is one dict look-up, not a walk over the pods.
    addresses: Counter[str] = field(default_factory=Counter)

    def register(self, doc: dict[str, Any]) -> str:
        uuid, ip = _text(doc, "uuid"), _text(doc, "ip")
        if not uuid or not set(uuid) <= _UUID_CHARS or len(uuid) > 64:
            raise ValueError("uuid is not a pod UUID")
        socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
        apps = doc["apps"]
        if not isinstance(apps, dict) or not isinstance(doc["pod_manifest"], dict):
            raise TypeError("apps and pod_manifest must be objects")
        meta = PodMetadata(
            uuid=uuid,
            pod_manifest=doc["pod_manifest"],
            image_manifests={
                str(n): base64.b64decode(a["manifest"], validate=True) for n, a in apps.items()
            },
            image_ids={str(n): str(a["id"]) for n, a in apps.items()},
            key=self.key,
            token=secrets.token_urlsafe(32),
        )
        with self.lock:
            self._drop(uuid)
            self.pods[uuid] = (meta, ip)
            self.addresses[ip] += 1
        return meta.token

    def unregister(self, uuid: str) -> None:
        with self.lock:
            self._drop(uuid)

    def _drop(self, uuid: str) -> None:
        """Forget ``uuid`` and its address (the caller holds the lock)."""
        entry = self.pods.pop(uuid, None)
        if entry is not None:
            self.addresses[entry[1]] -= 1
            if not self.addresses[entry[1]]:
                del self.addresses[entry[1]]

    def uuids(self) -> list[str]:
        with self.lock:
            return sorted(self.pods)

    def has_address(self, client: str) -> bool:
        """A registered pod has this address (its connections come out of the share kept
        for registered pods, trustd.unprivileged.mds._admit)."""
        mapped = client.removeprefix("::ffff:")  # an IPv4 pod seen on a dual-stack socket
        with self.lock:
            return client in self.addresses or mapped in self.addresses

    def lookup(self, token: str, client: str) -> PodMetadata | None:
        with self.lock:
            entries = list(self.pods.values())
        for meta, ip in entries:
            if hmac.compare_digest(token.encode(), meta.token.encode()):
                return meta if client in (ip, f"::ffff:{ip}") else None
        return None


def _text(doc: dict[str, Any], name: str) -> str:
    value = doc[name]
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string")
    return value


def peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def _read_request(conn: socket.socket) -> dict[str, Any]:
    chunks: list[bytes] = []
    size = 0
    while not b"".join(chunks[-1:]).endswith(b"\n"):
        chunk = conn.recv(1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_REQUEST:
            raise ValueError(f"request larger than {MAX_REQUEST} bytes")
    doc = json.loads(b"".join(chunks))
    if not isinstance(doc, dict) or len(doc) != 1:
        raise ValueError("a request is one object with one key")
    return doc


def _answer(registry: Registry, doc: dict[str, Any], where: tuple[str, int]) -> dict[str, Any]:
    if "register" in doc:
        token = registry.register(doc["register"])
        return {"token": token, "address": where[0], "port": where[1]}
    if "unregister" in doc:
        registry.unregister(_text(doc["unregister"], "uuid"))
        return {"ok": True}
    if "pods" in doc:
        return {"pods": registry.uuids()}
    raise ValueError("unknown request: give register, unregister or pods")


def handle_registration(registry: Registry, conn: socket.socket, where: tuple[str, int]) -> None:
    """One registration connection: root only, one request, one answer."""
    with conn:
        conn.settimeout(10)
        uid = peer_uid(conn)
        if uid != 0:
            conn.sendall(json.dumps({"error": f"uid {uid} may not register pods"}).encode())
            conn.shutdown(socket.SHUT_WR)
            _drain(conn)  # closing on unread data would reset the connection: no answer read
            return
        try:
            answer = _answer(registry, _read_request(conn), where)
        except (ValueError, KeyError, TypeError, OSError, binascii.Error) as exc:
            answer = {"error": f"bad registration: {exc}"}
        conn.sendall(json.dumps(answer).encode() + b"\n")


def _drain(conn: socket.socket, limit: int = 1 << 20) -> None:
    with contextlib.suppress(OSError):
        while limit > 0 and (chunk := conn.recv(1 << 16)):
            limit -= len(chunk)


def serve_registrations(
    registry: Registry, listener: socket.socket, where: tuple[str, int]
) -> None:
    while True:
        conn, _ = listener.accept()
        threading.Thread(
            target=handle_registration, args=(registry, conn, where), daemon=True
        ).start()


def main() -> int:
    from trustd.shared.isolation import set_undumpable  # noqa: PLC0415

    set_undumpable()  # first: before the key is in memory
    if os.geteuid() == 0 or os.getuid() == 0:
        print(
            "metadata-service: refusing to serve as root; run it as rkt-mds (rkt-metadata.socket"
            " does) or start it as root with `rkt metadata-service`, which drops to rkt-mds",
            file=sys.stderr,
        )
        return 254
    try:
        register, http = activated_sockets(listen_fds())
    except (ActivationError, OSError) as exc:
        print(f"metadata-service: {exc}", file=sys.stderr)
        return 254
    registry = Registry()
    where = (str(http.getsockname()[0]), int(http.getsockname()[1]))
    threading.Thread(
        target=serve_registrations, args=(registry, register, where), daemon=True
    ).start()
    serve_on(http, registry.lookup, registry.has_address).serve_forever()
    return 0

"""Register a ``--mds-register`` pod with the host's metadata service (``rkt metadata-service``).

Root (the pod's init) connects to the daemon's registration socket, which only root can
reach: ``<dir>/mds/register.sock`` (made by root's ``rkt metadata-service``, in the root-only
``<dir>/mds``) or rkt's ``/run/rkt/metadata-svc.sock`` (systemd's ``rkt-metadata.socket``,
0600 root). It sends the pod's UUID, its address as the daemon will see it, the pod manifest
and each app's image manifest and ID, and gets the pod's token and the HTTP port back: the
apps' ``AC_METADATA_URL``: ``http://<host side of the pod network>:<port>/<token>``, as
rkt's. A pod on a CNI network is registered with its address there and reaches the daemon at
its network's gateway (172.16.28.1 on ``default``, where the daemon listens by default); a
``--net=host`` pod on loopback. When no daemon runs, or it listens where the pod cannot reach
it (another network's gateway), the pod's own in-pod service is used instead (_mds.py).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
from pathlib import Path

from trustd.privileged.executor.plan import PodPlan
from trustd.privileged.net import addresses
from trustd.privileged.pod.lifecycle import MANIFEST
from trustd.shared.errors import LocalStateError

SYSTEMD_SOCKET = Path("/run/rkt/metadata-svc.sock")  # rkt's path
MAX_ANSWER = 4096
_HINT = "see the metadata service's log; restart it (rkt metadata-service)"


def daemon_socket(data_dir: Path) -> Path | None:
    """The registration socket of a running host daemon, or None."""
    for path in (data_dir / "mds" / "register.sock", SYSTEMD_SOCKET):
        try:
            st = path.lstat()
        except OSError:
            continue
        if stat.S_ISSOCK(st.st_mode) and st.st_uid == 0:
            return path
    return None


def pod_address(plan: PodPlan) -> tuple[str, str] | None:
    """(the pod's address as the host daemon sees it, the host's address as the pod reaches
    it), or None when the pod cannot reach a host service: loopback both ways for
    ``--net=host``; on CNI networks the pod's address on its first network and that
    network's gateway, from root's network record (``trustd.privileged.net.addresses``);
    None for ``--net=none`` (loopback only)."""
    if plan.net == "host":
        return ("127.0.0.1", "127.0.0.1")
    if plan.network.options.mode == "cni":
        return addresses(plan.uuid)
    return None


def _call(path: Path, request: dict[str, object]) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(os.fsencode(path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        raw = b""
        while len(raw) <= MAX_ANSWER and (chunk := sock.recv(MAX_ANSWER)):
            raw += chunk
    try:
        answer = json.loads(raw)
    except ValueError as exc:
        raise LocalStateError(
            f"the metadata service at {path} answered garbage", hint=_HINT
        ) from exc
    if not isinstance(answer, dict):
        raise LocalStateError(f"the metadata service at {path} answered garbage", hint=_HINT)
    if "error" in answer:
        raise LocalStateError(f"the metadata service refused: {answer['error']}", hint=_HINT)
    return answer


def register(path: Path, plan: PodPlan, private: Path, where: tuple[str, str]) -> str | None:
    """Register the pod; its ``AC_METADATA_URL``, or None when no daemon answers there or
    the daemon listens where this pod cannot reach it."""
    address, host = where
    apps = {
        a.name: {
            "manifest": base64.b64encode((Path(a.tree) / "manifest").read_bytes()).decode(),
            "id": a.image_key,
        }
        for a in plan.apps
    }
    doc = {
        "uuid": plan.uuid,
        "ip": address,
        "pod_manifest": json.loads((private / MANIFEST).read_bytes()),
        "apps": apps,
    }
    try:
        answer = _call(path, {"register": doc})
    except (ConnectionRefusedError, FileNotFoundError):
        return None  # a socket left by a daemon that stopped
    token, port = answer.get("token"), answer.get("port")
    if not isinstance(token, str) or not token.isascii() or not isinstance(port, int):
        raise LocalStateError(f"the metadata service at {path} answered garbage", hint=_HINT)
    if not token.replace("-", "").replace("_", "").isalnum() or not 0 < port < 65536:
        raise LocalStateError(f"the metadata service at {path} answered garbage", hint=_HINT)
    listening = answer.get("address")
    if listening not in ("0.0.0.0", "::", host):  # noqa: S104 - compared only
        unregister(path, plan.uuid)  # it serves another address: the in-pod server instead
        return None
    socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/{token}"


def forget(data_dir: Path, uuid: str) -> None:
    """At rm and gc: drop the pod's registration, if a daemon runs."""
    path = daemon_socket(data_dir)
    if path is not None:
        unregister(path, uuid)


def unregister(path: Path, uuid: str) -> None:
    try:
        _call(path, {"unregister": {"uuid": uuid}})
    except (OSError, LocalStateError):
        return  # the daemon is gone: so is the registration

"""Register a ``--mds-register`` pod with the host's metadata service (``rkt metadata-service``).

Root (the pod's init) connects to the daemon's registration socket, which only root can
reach: ``<dir>/mds/register.sock`` (made by root's ``rkt metadata-service``, in the root-only
``<dir>/mds``) or rkt's ``/run/rkt/metadata-svc.sock`` (systemd's ``rkt-metadata.socket``,
0600 root). It sends the pod's UUID, its address as the daemon will see it, the pod manifest
and each app's image manifest and ID, and gets the pod's token and the HTTP port back: the
apps' ``AC_METADATA_URL``: ``http://<host side of the pod network>:<port>/<token>``, as
rkt's. A pod on a CNI network is registered with its address there and reaches the daemon at
its network's gateway (172.16.28.1 on ``default``, where the daemon listens by default); a
``--net=host`` pod on loopback. When no daemon runs the pod does not start, with rkt's error
(``could not reach the metadata service``), checked before the pod is made or moved to run;
a daemon that listens where the pod cannot reach it (another network's gateway) stops it too.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import stat
from collections.abc import Sequence
from pathlib import Path

from trustd.privileged.executor.plan import PodPlan
from trustd.privileged.net import addresses
from trustd.privileged.pod.lifecycle import MANIFEST
from trustd.shared.errors import LocalStateError, UserError

SYSTEMD_SOCKET = Path("/run/rkt/metadata-svc.sock")  # rkt's path
MAX_ANSWER = 4096
MAX_LIST = 8 << 20  # the answer to {"pods": {}}: ~40 bytes a registered pod
_HINT = "see the metadata service's log; restart it (rkt metadata-service)"
UNREACHABLE = "could not reach the metadata service"  # rkt's errUnreachable, first line
UNREACHABLE_HINT = (
    "start it first: `rkt metadata-service` as root (or `systemctl start rkt-metadata.socket`"
    " where trustd's systemd units are installed), or run without --mds-register"
)
NO_NETWORK = (  # rkt's words
    "--mds-register flag does not work with --net=none. "
    "Please use 'host', 'default' or an equivalent network"
)


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


def _answers(path: Path) -> bool:
    """The daemon answers a well-formed request there (rkt only dialed; a bare connect would
    leave the daemon a broken request to log)."""
    try:
        _call(path, {"pods": {}})
    except (OSError, LocalStateError):
        return False
    return True


def require_daemon(data_dir: Path, net: str, *, probe: bool = True) -> Path:
    """rkt's check before a ``--mds-register`` pod is made or moved to run (so the user can
    start the daemon and run it again): a pod network, and a daemon that answers on its
    registration socket (``probe``; else its socket is enough: the registration that follows
    is the probe). The socket, or UserError/LocalStateError."""
    if net == "none":
        raise UserError(NO_NETWORK, hint="use --net=default (the daemon listens on its gateway)")
    path = daemon_socket(data_dir)
    if path is None or (probe and not _answers(path)):
        where = f"{data_dir / 'mds' / 'register.sock'} or {SYSTEMD_SOCKET}"
        raise LocalStateError(f"{UNREACHABLE}: no daemon answers at {where}", hint=UNREACHABLE_HINT)
    return path


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


def _call(path: Path, request: dict[str, object], cap: int = MAX_ANSWER) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(os.fsencode(path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        chunks: list[bytes] = []
        size = 0
        while size <= cap and (chunk := sock.recv(min(cap, 1 << 16))):
            chunks.append(chunk)
            size += len(chunk)
        raw = b"".join(chunks)
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


def register(path: Path, plan: PodPlan, private: Path, where: tuple[str, str]) -> str:
    """Register the pod; its ``AC_METADATA_URL``. LocalStateError when no daemon answers
    there (any more) or the daemon listens where this pod cannot reach it."""
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
    except (ConnectionRefusedError, FileNotFoundError) as exc:  # it stopped since the check
        raise LocalStateError(f"{UNREACHABLE} at {path}: {exc}", hint=UNREACHABLE_HINT) from exc
    token, port = answer.get("token"), answer.get("port")
    if not isinstance(token, str) or not token.isascii() or not isinstance(port, int):
        raise LocalStateError(f"the metadata service at {path} answered garbage", hint=_HINT)
    if not token.replace("-", "").replace("_", "").isalnum() or not 0 < port < 65536:
        raise LocalStateError(f"the metadata service at {path} answered garbage", hint=_HINT)
    listening = answer.get("address")
    if listening not in ("0.0.0.0", "::", host):  # noqa: S104 - compared only
        unregister(path, plan.uuid)
        fix = (  # in the message: the stage1 reports the message only
            f"start the daemon with --listen-address={host} (or 0.0.0.0, as rkt), "
            "or run the pod on the daemon's network"
        )
        raise LocalStateError(
            f"the metadata service listens on {str(listening)[:64]}, which this pod cannot "
            f"reach (the host side of its network is {host}): {fix}",
            hint=fix,
        )
    socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/{token}"


def forget(data_dir: Path, uuid: str) -> None:
    """At rm: drop the pod's registration, if a daemon runs."""
    forget_all(data_dir, (uuid,))


def forget_all(data_dir: Path, uuids: Sequence[str]) -> None:
    """At rm and gc: drop the registrations of ``uuids``, if a daemon runs: one question for
    the pods it has, then one unregistration for each of ``uuids`` among them (each of them
    when the answer is not a list of strings: the daemon is not believed to hold fewer)."""
    path = daemon_socket(data_dir)
    if path is None or not uuids:
        return
    todo: Sequence[str] = uuids
    if len(uuids) > 1:
        with contextlib.suppress(OSError, LocalStateError):
            listed = _call(path, {"pods": {}}, MAX_LIST).get("pods")
            if isinstance(listed, list) and all(isinstance(u, str) for u in listed):
                registered = set(listed)
                todo = [u for u in uuids if u in registered]
    for uuid in todo:
        unregister(path, uuid)


def unregister(path: Path, uuid: str) -> None:
    try:
        _call(path, {"unregister": {"uuid": uuid}})
    except (OSError, LocalStateError):
        return  # the daemon is gone: so is the registration

"""``rkt metadata-service`` as root: bind the host daemon's sockets, then become the daemon.

Root binds the HTTP socket (``--listen-address``:``--listen-port``, by default the ``default``
network's gateway 172.16.28.1, with IP_FREEBIND, and 18112 as rkt's) and the
registration socket ``<dir>/mds/register.sock`` (0600, in ``<dir>/mds``, 0700 root: only root
reaches it; group rkt cannot even look it up), puts them at fds 3 and 4 with ``LISTEN_FDS=2``
and ``LISTEN_PID`` set to its own pid, exactly as systemd's socket activation passes them,
drops to ``rkt-mds`` (:func:`._mds.drop_to`: no capability in any set, no_new_privs, no
supplementary group) and execs ``python -I -m trustd.unprivileged.mds --daemon``. The root
program never imports the daemon's code. A socket file left by an earlier daemon is replaced;
anything else at that name is refused.
"""

from __future__ import annotations

import fcntl
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

from trustd.privileged.executor import _linux as lx
from trustd.privileged.executor._mds import MDS_MODULE, drop_to, mds_ids
from trustd.shared.errors import LocalStateError, UserError
from trustd.shared.request import MetadataServiceStart

FIRST_FD = 3  # SD_LISTEN_FDS_START


def _mds_dir(data_dir: Path) -> Path:
    path = data_dir / "mds"
    path.mkdir(mode=0o700, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077:
        raise LocalStateError(
            f"{path} must be a directory of root's that only root can enter",
            hint=f"chown root:root {path} && chmod 0700 {path}",
        )
    return path


def registration_socket(data_dir: Path) -> socket.socket:
    path = _mds_dir(data_dir) / "register.sock"
    try:
        st = path.lstat()
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise LocalStateError(f"{path} exists and is not a socket", hint=f"remove {path}")
        path.unlink()  # left by an earlier daemon
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(os.fsencode(path))
    finally:
        os.umask(old)
    path.chmod(0o600)
    sock.listen(64)
    return sock


IP_FREEBIND, IPV6_FREEBIND = 15, 78  # <linux/in.h>, <linux/in6.h>; not in Python 3.11


def http_socket(address: str, port: int) -> socket.socket:
    """The HTTP socket on ``address``, bound with IP_FREEBIND: the pod network's gateway
    (172.16.28.1) exists only while a pod's host-side veth carries it, and the daemon must
    listen there before the first pod and keep listening between pods (systemd's
    ``FreeBind=true``)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
    try:
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        raise UserError(
            f"cannot listen on {address}:{port}: {exc.strerror}",
            hint="another metadata service may run; pick --listen-address/--listen-port",
        ) from exc
    sock.listen(128)
    return sock


_IPTABLES = {socket.AF_INET: "/usr/sbin/iptables", socket.AF_INET6: "/usr/sbin/ip6tables"}


def guard_port(address: str, port: int, daemon_uid: int) -> None:
    """Only a socket root made may answer on ``address``:``port`` (red team 3).

    Anyone may bind an unprivileged port on any address (IP_FREEBIND needs no privilege):
    whenever the daemon is not holding 18112 -- stopped, restarted, killed -- a local user who
    binds it would receive every registered pod's token and answer its metadata and HMAC
    requests. An OUTPUT rule drops what such a socket sends from that address and port (its
    SYN-ACK first, so no pod's request ever reaches it): the owner match reads the sending
    socket file's credentials, which are root's for the listening socket (root's or systemd's)
    and ``rkt-mds``'s for the connections the daemon accepts. The rule outlives the daemon on
    purpose; it is added once.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    rule = ["-p", "tcp", "--sport", str(port)]
    if address not in ("0.0.0.0", "::"):  # noqa: S104 - a comparison, not a bind
        rule += ["-s", address]
    rule += ["-m", "owner", "!", "--uid-owner", "0"]
    rule += ["-m", "owner", "!", "--uid-owner", str(daemon_uid), "-m", "comment", "--comment"]
    rule += [f"trustd: metadata service port {port}, root and rkt-mds only", "-j", "DROP"]
    tool = _IPTABLES[family]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
    try:
        present = subprocess.run(  # noqa: S603 - a fixed root-owned binary, no shell
            [tool, "-w", "-C", "OUTPUT", *rule], env=env, capture_output=True, check=False
        )
        if present.returncode != 0:
            subprocess.run(  # noqa: S603 - a fixed root-owned binary, no shell
                [tool, "-w", "-I", "OUTPUT", "1", *rule], env=env, capture_output=True, check=True
            )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or str(exc).encode()
        raise LocalStateError(
            f"cannot guard {address}:{port} against other local users' sockets: "
            f"{detail.decode(errors='replace').strip()}",
            hint="install iptables (its owner and comment matches); the daemon does not "
            "serve unguarded",
        ) from exc


def serve(data_dir: Path, request: MetadataServiceStart) -> int:
    """Become the daemon (never returns unless binding fails)."""
    uid, gid = mds_ids()
    register = registration_socket(data_dir)
    http = http_socket(request.address, request.port)
    host, port = http.getsockname()[:2]
    guard_port(host, port, uid)
    print(f"metadata-service: listening on {host}:{port}", file=sys.stderr, flush=True)
    high = [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD_CLOEXEC, 10) for s in (register, http)]
    for fd, source in enumerate(high, start=FIRST_FD):
        os.dup2(source, fd)  # inheritable, as systemd passes them
    lx.close_from(FIRST_FD + 2)
    os.chdir("/")
    drop_to(uid, gid)
    env = {"PATH": "/usr/bin:/bin", "LISTEN_FDS": "2", "LISTEN_PID": str(os.getpid())}
    argv = [sys.executable, "-I", "-m", MDS_MODULE, "--daemon"]
    os.execve(sys.executable, argv, env)  # noqa: S606 - no shell
    return 254  # pragma: no cover - execve does not return

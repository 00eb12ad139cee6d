"""Start the pod's metadata service as an unprivileged process (issue #10, class 11).

The pod's init (root, inside the pod's network namespace) binds 127.0.0.1:18112 itself, then
forks a child that drops everything a root process holds -- the bounding set, ambient,
permitted and effective capabilities, supplementary groups -- becomes ``rkt-mds``
(scripts/setup-groups.sh), sets no_new_privs, keeps only two fds (3: a pipe that carries the
pod's metadata, token and HMAC key; 4: the listening socket) and execs a fresh interpreter:
``python -I -m trustd.unprivileged.mds``. The root program never imports that code.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import json
import os
import pwd
import secrets
import signal
import socket
import sys
from pathlib import Path

from trustd.privileged.executor import _linux as lx
from trustd.privileged.executor.plan import PodPlan
from trustd.privileged.pod.lifecycle import MANIFEST
from trustd.shared.errors import LocalStateError, PolicyViolationError
from trustd.shared.isolation import _libc, set_no_new_privs

MDS_PORT = 18112  # appc's; trustd.unprivileged.mds serves whatever socket it is given
MDS_USER = "rkt-mds"
MDS_MODULE = "trustd.unprivileged.mds"  # exec'ed by name: the root program never imports it
CONFIG_FD, LISTEN_FD = 3, 4


def hmac_key(data_dir: Path) -> bytes:
    """The host's metadata-service HMAC key (created once, 0600 root)."""
    path = data_dir / "mds" / "hmac.key"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    key = secrets.token_bytes(64)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def mds_ids() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(MDS_USER)
    except KeyError as exc:
        raise LocalStateError(
            f"the metadata service's account {MDS_USER!r} does not exist",
            hint="create it: bash scripts/setup-groups.sh (or: make setup)",
        ) from exc
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise LocalStateError(f"account {MDS_USER!r} must not be uid or gid 0")
    return entry.pw_uid, entry.pw_gid


def _config(plan: PodPlan, private: Path, data_dir: Path, token: str) -> bytes:
    apps = {
        a.name: {
            "manifest": base64.b64encode((Path(a.tree) / "manifest").read_bytes()).decode(),
            "id": a.image_key,
        }
        for a in plan.apps
    }
    doc = {
        "uuid": plan.uuid,
        "pod_manifest": json.loads((private / MANIFEST).read_bytes()),
        "apps": apps,
        "key": base64.b64encode(hmac_key(data_dir)).decode(),
        "token": token,
    }
    return json.dumps(doc).encode()


def _each_cap(option: int) -> list[int]:
    """``prctl(option, nr)`` for every capability the kernel knows (EINVAL past the last)."""
    out = []
    for nr in range(64):
        try:
            out.append(_libc.prctl(option, nr))
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            break
    return out


CAP_DAC_READ_SEARCH = 2
PR_SET_KEEPCAPS = 8


def drop_to(uid: int, gid: int) -> None:
    """Become ``uid``:``gid`` with an empty bounding set, no ambient or inheritable
    capability and no_new_privs, keeping only CAP_DAC_READ_SEARCH in the effective set until
    the exec (the interpreter may sit under a root-only directory, as it does here under
    /root/.pyenv). The exec of a file without file capabilities by a non-root uid leaves
    the new program no capability at all; the service checks that first thing."""
    _each_cap(_libc.PR_CAPBSET_DROP)  # needs CAP_SETPCAP: drop the bounding set while root
    _libc.prctl(_libc.PR_CAP_AMBIENT, _libc.PR_CAP_AMBIENT_CLEAR_ALL)
    _libc.prctl(PR_SET_KEEPCAPS, 1)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    keep = 1 << CAP_DAC_READ_SEARCH
    _libc.capset(_libc.CapState(keep, keep, 0))
    _libc.prctl(PR_SET_KEEPCAPS, 0)
    set_no_new_privs()
    _libc.prctl(_libc.PR_SET_PDEATHSIG, signal.SIGKILL)  # cleared by setresuid: set it after
    held = _libc.capget()
    if held.permitted != keep or held.inheritable or any(_each_cap(_libc.PR_CAPBSET_READ)):
        raise PolicyViolationError("the metadata service still holds capabilities")
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups():
        raise PolicyViolationError("the metadata service did not drop to its account")


def _high(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)


def _exec_service(config_r: int, sock: int, uid: int, gid: int) -> None:
    config_r, sock = _high(config_r), _high(sock)
    os.dup2(config_r, CONFIG_FD)  # dup2: inheritable
    os.dup2(sock, LISTEN_FD)
    lx.close_from(LISTEN_FD + 1)  # nothing else of the init's: no lock, no pipe, no tty fd
    os.chdir("/")
    drop_to(uid, gid)
    argv = [sys.executable, "-I", "-m", MDS_MODULE, f"--config-fd={CONFIG_FD}"]
    env = {"PATH": "/usr/bin:/bin"}
    os.execve(sys.executable, [*argv, f"--listen-fd={LISTEN_FD}"], env)  # noqa: S606 - no shell


def start_mds(plan: PodPlan, private: Path, data_dir: Path) -> tuple[int, str]:
    """Fork and exec the service; its pid and ``AC_METADATA_URL``."""
    uid, gid = mds_ids()
    token = secrets.token_urlsafe(32)
    config = _config(plan, private, data_dir, token)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0 if plan.net == "host" else MDS_PORT))
        listener.listen(64)
        port = listener.getsockname()[1]
        config_r, config_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - measured by the integration tests
            try:
                os.close(config_w)
                _exec_service(config_r, listener.fileno(), uid, gid)
            except BaseException as exc:  # noqa: BLE001 - report, never return into init
                print(f"run: metadata service: {exc}", file=sys.stderr)
            os._exit(127)
    os.close(config_r)
    with os.fdopen(config_w, "wb") as pipe:
        pipe.write(config)
    return pid, f"http://127.0.0.1:{port}/{token}"

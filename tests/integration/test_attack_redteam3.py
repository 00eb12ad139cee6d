"""Third red-team pass (issue #16 follow-up): CNI networking, the host metadata daemon,
``--private-users`` and root's docker conversion, attacked as a real member of group rkt
(``trustd-it-user``, through an unprivileged ``/bin/sh``) or as any local user.

Each test makes the attack, then asserts what trustd guarantees. Each held, or was fixed
in this pass (the docstring says what was wrong): the metadata-service takeover, the pod-lock
denial and the IPv6 zone-id newline were strict ``xfail``s until their fixes landed.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ConfigDirs
from tests.integration._attacker import as_member, member_popen, saved_uuid, stop
from tests.integration.conftest import RKT, app_output, rkt, start_metadata_service

API = "acMetadata/v1"
CNI = pytest.mark.skipif(
    not Path("/usr/lib/cni/ptp").exists(), reason="needs containernetworking-plugins"
)


# --- 1. CNI: what root writes into the pod's /etc/resolv.conf and /etc/hosts -----------------


def test_dns_and_hosts_values_cannot_add_lines_to_the_pods_files(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """ADR 0019: 'Every value is validated so none can add a line.' Whoever passes
    ``--dns``/``--hosts-entry`` (an orchestrator relaying a tenant's value) must not be able
    to add a name server or a host entry of their own with a newline."""
    result = rkt(
        shared_dirs,
        "run",
        "--net=none",
        "--dns=fe80::1%x\nnameserver 192.0.2.66",
        "--hosts-entry=fe80::1%x\n192.0.2.66 bank.example=h",
        image,
        "--exec=/bin/cat",
        "--",
        "/etc/resolv.conf",
        "/etc/hosts",
    )
    out = app_output(result.stdout)
    assert "nameserver 192.0.2.66" not in out.splitlines(), out
    assert not any(line.startswith("192.0.2.66") for line in out.splitlines()), out
    if result.returncode != 0:  # refused: with the reason, exit 254, nothing ran
        assert result.returncode == 254 and "--dns" in result.stderr, result.stderr


def test_huge_dns_and_hosts_values_are_refused_before_anything_runs(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """Over-long names and too many entries are refused by the front end and by root's
    decoding alike (exit 254, the flag named), never written into a pod's files."""
    long_name = ".".join(["a" * 63] * 5)  # 319 characters: over DNS's 253
    for flags in (
        (f"--hosts-entry=192.0.2.1={long_name}",),
        (f"--dns-search={long_name}",),
        tuple(f"--dns=192.0.2.{i}" for i in range(1, 40)),  # over 32 name servers
        ("--dns-opt=ndots:2\nnameserver 192.0.2.66",),
        ("--hosts-entry=192.0.2.1=h\nx",),
    ):
        result = rkt(shared_dirs, "run", "--net=none", *flags, image, "--exec=/bin/true")
        assert result.returncode == 254, (flags, result.stderr)
        assert "run:" in result.stderr and "Traceback" not in result.stderr
    assert not list((shared_dirs.data / "pods" / "run").glob("*"))


# --- 2. the host metadata daemon (rkt metadata-service) --------------------------------------


def _daemon(dirs: ConfigDirs) -> tuple[subprocess.Popen[str], int]:
    """``rkt metadata-service`` as root, on its default address (172.16.28.1) and a free
    port, answering on its registration socket."""
    proc, address, port = start_metadata_service(dirs)
    assert address == "172.16.28.1"
    return proc, port


def _mds_pod(dirs: ConfigDirs, image: str, uuid_file: Path, script: str) -> subprocess.Popen[str]:
    """A ``--net=default --mds-register`` pod running ``sh -c script``, in the background."""
    return subprocess.Popen(
        [
            *(RKT, *dirs.flags(), "run", "--net=default", "--mds-register"),
            *(f"--uuid-file-save={uuid_file}", image, "--exec=/bin/sh", "--", "-c", script),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


_SPOOF = """
import socket, sys
pod_ip, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket()
s.setsockopt(socket.IPPROTO_IP, 15, 1)  # IP_FREEBIND: needs no privilege
s.bind((pod_ip, 0))  # the pod's address as the source
s.settimeout(3)
try:
    s.connect(("172.16.28.1", port))
    s.sendall(f"GET /{token}/acMetadata/v1/pod/manifest HTTP/1.0\\r\\n\\r\\n".encode())
    print("ANSWER", s.recv(4096)[:12])
except OSError as exc:
    print("NO-CONNECTION", type(exc).__name__)
"""


@CNI
def test_a_leaked_token_is_useless_from_the_host_even_with_the_pods_address_as_source(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """A member of group rkt who has a running pod's token (leaked: the app's environment is
    readable by a host account with the app's uid without --private-users) binds the pod's
    own address as the source (IP_FREEBIND needs no capability) and asks the daemon for
    the pod's manifest. The daemon's answer goes to the pod's veth, not to the member: no
    connection, no metadata."""
    proc, port = _daemon(shared_dirs)
    uuid_file = shared_dirs.data.parent / "uuid"
    pod = _mds_pod(
        shared_dirs,
        image,
        uuid_file,
        'echo "$AC_METADATA_URL"; ip -4 -o addr show eth0; exec sleep 120',
    )
    try:
        assert pod.stdout is not None
        url = app_output(pod.stdout.readline()).strip()
        addr_line = app_output(pod.stdout.readline())
        assert url.startswith(f"http://172.16.28.1:{port}/"), url + pod.communicate()[1]
        token = url.rsplit("/", 1)[1]
        pod_ip = addr_line.split(" inet ", 1)[1].split("/", 1)[0]
        tried = as_member("/usr/bin/python3", "-c", _SPOOF, pod_ip, str(port), token)
        assert "NO-CONNECTION" in tried.stdout, tried.stdout + tried.stderr
        assert "ANSWER" not in tried.stdout
    finally:
        with contextlib.suppress(Exception):
            rkt(shared_dirs, "stop", saved_uuid(uuid_file))
        stop(pod)
        proc.kill()
        proc.wait()


_HIJACK = """
import socket, sys
port = int(sys.argv[1])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IP, 15, 1)  # IP_FREEBIND: needs no privilege
s.bind(("172.16.28.1", port))
s.listen(16)
print("BOUND", flush=True)
s.settimeout(60)
while True:
    try:
        c, _ = s.accept()
    except OSError:
        break
    c.settimeout(5)
    try:
        line = c.recv(65536).split(b"\\r\\n", 1)[0]
        print("GOT", line.decode(errors="replace"), flush=True)
        c.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Length: 6\\r\\n\\r\\nforged")
    except OSError:
        pass
    c.close()
"""

_ASK_AGAIN = (
    'echo "$AC_METADATA_URL"; M="$AC_METADATA_URL/acMetadata/v1"; '
    'echo "uuid=$(wget -q -O - "$M/pod/uuid")"; '
    "while [ ! -e /tmp/done ]; do "
    'A=$(wget -q -O - "$M/pod/uuid" 2>/dev/null); '
    '[ "$A" = forged ] && { echo "uuid=$A"; touch /tmp/done; }; sleep 0.3; done'
)


@CNI
def test_a_local_user_cannot_take_over_the_metadata_service_of_running_pods(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """A ``--net=default --mds-register`` pod is registered with the host daemon and asks
    it for its UUID. The daemon stops (restarted by an admin, killed by the OOM killer).
    A member of group rkt binds the daemon's address and port as an ordinary user and
    answers the pod's next request: the pod must never get an answer from anyone but the
    daemon, and no pod's token may reach the member."""
    proc, port = _daemon(shared_dirs)
    uuid_file = shared_dirs.data.parent / "uuid"
    pod = _mds_pod(shared_dirs, image, uuid_file, _ASK_AGAIN)
    hijacker = None
    try:
        assert pod.stdout is not None
        url = app_output(pod.stdout.readline()).strip()
        first = app_output(pod.stdout.readline()).strip()
        assert url.startswith(f"http://172.16.28.1:{port}/"), url + pod.communicate()[1]
        assert first == f"uuid={saved_uuid(uuid_file)}"  # served by the daemon
        proc.kill()  # the daemon stops; its pods run on
        proc.wait()
        hijacker = member_popen("/usr/bin/python3", "-c", _HIJACK, str(port))
        assert hijacker.stdout is not None
        bound = hijacker.stdout.readline()
        assert "BOUND" in bound, bound + hijacker.communicate()[1]
        deadline = time.monotonic() + 20  # the pod asks every 0.3 s; it ends once forged
        while time.monotonic() < deadline and pod.poll() is None:
            time.sleep(0.5)
        rkt(shared_dirs, "stop", saved_uuid(uuid_file))
        out, _ = pod.communicate(timeout=60)
        seen, _ = stop(hijacker)
        token = url.rsplit("/", 1)[1]
        assert "uuid=forged" not in app_output(out), out
        assert token not in seen, seen
    finally:
        if hijacker is not None and hijacker.poll() is None:
            stop(hijacker)
        if pod.poll() is None:
            with contextlib.suppress(Exception):
                rkt(shared_dirs, "stop", saved_uuid(uuid_file))
            stop(pod)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- 3. pod locks: a member's flock on a pod directory -------------------------------------

_FLOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
print("LOCKED", flush=True)
time.sleep(120)
"""


def test_a_members_lock_on_a_prepared_pod_does_not_stop_root_running_it(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """A member of group rkt holds a shared flock on a prepared pod's directory; root's
    ``run-prepared`` must still run the pod (its lock is not the group's to take)."""
    uuid = rkt(shared_dirs, "prepare", image, "--exec=/bin/true", check=True).stdout.strip()
    pod_dir = shared_dirs.data / "pods" / "prepared" / uuid
    locker = member_popen("/usr/bin/python3", "-c", _FLOCK, str(pod_dir))
    try:
        assert locker.stdout is not None
        assert "LOCKED" in locker.stdout.readline(), locker.communicate()[1]
        ran = rkt(shared_dirs, "run-prepared", uuid)
        assert ran.returncode == 0, ran.stderr
    finally:
        stop(locker)

"""``rkt metadata-service``: the appc metadata service as an unprivileged host daemon.

A real daemon (root binds, it runs as rkt-mds) serves real ``--mds-register`` pods over the
pod network (``--net=default``, at its gateway 172.16.28.1, the default listen address) and
over loopback (``--net=host``, with ``--listen-address=127.0.0.1``); the same daemon under
socket activation (LISTEN_FDS, as systemd passes them); and a real member of group rkt
trying to register a fake pod, read a pod's metadata or get a signature.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._policy import install_policy, policy_for_tests
from tests.conftest import ConfigDirs
from tests.integration._attacker import as_member
from tests.integration.conftest import (
    MDS_POD_CHECKS,
    app_output,
    mds_call,
    metadata_service,
    rkt,
    running_pod,
)

API = "acMetadata/v1"
UUID = "6a2f8f8e-6c36-4b2e-9d1f-0b8c3f2a9e10"


# In the pod: its URL, uuid and image ID from the service, an HMAC signature verified and a
# wrong one refused, and no in-pod server among the pod's processes.
_CHECKS = (
    'echo "$AC_METADATA_URL"; '
    + MDS_POD_CHECKS
    + "pgrep -f trustd.unprivileged.mds >/dev/null || echo no-in-pod-server"
)


def _status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {
        k: v.strip() for k, v in (ln.split(":\t", 1) for ln in text.splitlines() if ":\t" in ln)
    }


@pytest.fixture
def daemon(shared_dirs: ConfigDirs) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """The daemon on loopback (for --net=host pods and host-side probes)."""
    with metadata_service(shared_dirs, "--listen-address=127.0.0.1") as (proc, address, port):
        assert address == "127.0.0.1"
        _wait_serving(port)
        yield proc, port


@pytest.fixture
def pod_daemon(shared_dirs: ConfigDirs) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """The daemon as it starts by default: on the default network's host side, 172.16.28.1,
    bound before any pod (and so any veth with that address) exists."""
    with metadata_service(shared_dirs) as (proc, address, port):
        assert address == "172.16.28.1"
        yield proc, port


def _wait_serving(port: int) -> None:
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/x/{API}/pod/uuid", timeout=1)
        except urllib.error.HTTPError:
            return  # answering (404): the daemon's HTTP side is up
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the metadata service did not come up")


def _get(url: str, data: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, headers={"Metadata-Flavor": "AppContainer"})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


_register = mds_call


def _fake_pod(ip: str = "127.0.0.1", uuid: str = UUID) -> dict[str, object]:
    manifest = {"acKind": "ImageManifest", "name": "example.com/x", "annotations": []}
    return {
        "register": {
            "uuid": uuid,
            "ip": ip,
            "pod_manifest": {"acKind": "PodManifest", "apps": [{"name": "x"}]},
            "apps": {
                "x": {
                    "manifest": base64.b64encode(json.dumps(manifest).encode()).decode(),
                    "id": "sha512-" + "0" * 128,
                }
            },
        }
    }


def test_the_daemon_runs_as_rkt_mds_without_capabilities(
    shared_dirs: ConfigDirs, daemon: tuple[subprocess.Popen[str], int]
) -> None:
    proc, _ = daemon
    status = _status(proc.pid)
    import pwd  # noqa: PLC0415

    uid = pwd.getpwnam("rkt-mds").pw_uid
    assert status["Uid"].split() == [str(uid)] * 4
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[cap], 16) == 0, cap
    assert status["NoNewPrivs"] == "1"
    sock = shared_dirs.data / "mds/register.sock"
    assert (sock.stat().st_mode & 0o777, sock.stat().st_uid) == (0o600, 0)
    assert (sock.parent.stat().st_mode & 0o777) == 0o700


def test_a_registered_pod_is_served_by_the_host_daemon(
    shared_dirs: ConfigDirs, image: str, daemon: tuple[subprocess.Popen[str], int]
) -> None:
    _, port = daemon
    allowed = '["default", "default-restricted", "none", "host"]'
    text = policy_for_tests().replace('["default", "default-restricted", "none"]', allowed, 1)
    assert allowed in text
    install_policy(shared_dirs.local, text)  # --net=host: a scope must allow it (ADR 0019)
    uuid_file = shared_dirs.data.parent / "uuid"
    result = rkt(
        shared_dirs,
        "run",
        "--net=host",
        "--mds-register",
        f"--uuid-file-save={uuid_file}",
        image,
        "--exec=/bin/sh",
        "--",
        "-c",
        _CHECKS,
    )
    assert result.returncode == 0, result.stderr
    url, uuid, image_id, *answers = app_output(result.stdout).split()
    assert url.startswith(f"http://127.0.0.1:{port}/")  # the host daemon's port, not 18112
    assert uuid == uuid_file.read_text().strip()
    assert image_id.startswith(image)
    assert answers == ["verified", "refused", "no-in-pod-server"]
    # the pod exited: its registration is gone with it
    code, _, _ = _get(f"{url}/{API}/pod/uuid")
    assert code == 404


def test_group_rkt_cannot_register_read_or_sign(
    shared_dirs: ConfigDirs, daemon: tuple[subprocess.Popen[str], int]
) -> None:
    """As a real member of group rkt: the registration socket is out of reach; a token
    guessed or taken from another address names no pod."""
    _, port = daemon
    sock = shared_dirs.data / "mds/register.sock"
    reg = (
        "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
        "print('CONNECTED')"
    )
    tried = as_member("/usr/bin/python3", "-c", reg, str(sock))
    assert "CONNECTED" not in tried.stdout and "Permission denied" in tried.stderr
    answer = _register(sock, _fake_pod(ip="10.11.12.13"))  # root registers a pod elsewhere
    token = str(answer["token"])
    for path in ("pod/manifest", "pod/uuid"):  # right token, wrong address: 404
        assert _get(f"http://127.0.0.1:{port}/{token}/{API}/{path}")[0] == 404
    got = as_member(
        "/usr/bin/python3",
        "-c",
        "import sys,urllib.request as u\n"
        "for p in sys.argv[2:]:\n"
        "  try:\n"
        "    u.urlopen(sys.argv[1]+p, data=b'content=x' if 'sign' in p else None); print('GOT')\n"
        "  except Exception as e: print(getattr(e, 'code', e))",
        f"http://127.0.0.1:{port}/",
        f"{token}/{API}/pod/manifest",
        f"{token}/{API}/pod/hmac/sign",
        f"{'A' * 43}/{API}/pod/uuid",
    )
    assert got.stdout.split() == ["404", "404", "404"], got.stderr


def test_socket_activation_and_the_peer_check(shared_dirs: ConfigDirs) -> None:
    """The daemon on two sockets passed as systemd does (fds 3 and 4, LISTEN_FDS=2,
    LISTEN_PID of the daemon): a registration from a uid other than 0 is refused even on a
    socket anyone may connect to; a registered pod is served from its address only."""
    tmp_path = shared_dirs.data.parent  # traversable by other users (pytest's is root-only)
    reg = socket.socket(socket.AF_UNIX)
    reg.bind(str(tmp_path / "reg.sock"))
    (tmp_path / "reg.sock").chmod(0o666)  # the unit makes it 0600 root; here the uid check alone
    reg.listen(8)
    http = socket.socket()
    http.bind(("127.0.0.1", 0))
    http.listen(8)
    port = http.getsockname()[1]

    def to_3_and_4() -> None:
        high = [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD, 20) for s in (reg, http)]
        os.dup2(high[0], 3)
        os.dup2(high[1], 4)

    cmd = (
        "LISTEN_PID=$$ LISTEN_FDS=2 exec setpriv --reuid=rkt-mds --regid=rkt-mds --clear-groups "
        f"--bounding-set=-all --inh-caps=-all --no-new-privs {sys.executable} -I -m "
        "trustd.unprivileged.mds --daemon"
    )
    proc = subprocess.Popen(  # noqa: S602 - a fixed command; $$ is the daemon's pid after exec
        cmd,
        shell=True,
        preexec_fn=to_3_and_4,  # noqa: PLW1509 - dup2 only; this test starts no thread
        close_fds=False,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin"},
    )
    try:
        _wait_serving(port)
        refused = as_member(
            "/usr/bin/python3",
            "-c",
            "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
            "s.sendall(sys.argv[2].encode()+b'\\n'); s.shutdown(1); print(s.makefile().read())",
            str(tmp_path / "reg.sock"),
            json.dumps(_fake_pod()),
        )
        assert "may not register pods" in refused.stdout, refused.stderr
        answer = _register(tmp_path / "reg.sock", _fake_pod())
        assert answer["port"] == port
        base = f"http://127.0.0.1:{port}/{answer['token']}/{API}"
        code, ctype, body = _get(f"{base}/pod/uuid")
        assert (code, ctype, body) == (200, "text/plain; charset=us-ascii", UUID.encode())
        assert _get(f"{base}/apps/x/image/id")[2] == b"sha512-" + b"0" * 128
        sig = _get(f"{base}/pod/hmac/sign", {"content": "hello"})[2].decode()
        ok = {"content": "hello", "uuid": UUID, "signature": sig}
        assert _get(f"{base}/pod/hmac/verify", ok)[0] == 200
        assert _get(f"{base}/pod/hmac/verify", {**ok, "content": "other"})[0] == 403
        assert _register(tmp_path / "reg.sock", {"unregister": {"uuid": UUID}}) == {"ok": True}
        assert _get(f"{base}/pod/uuid")[0] == 404
    finally:
        proc.kill()
        proc.wait()


def test_the_daemon_refuses_to_serve_as_root() -> None:
    result = subprocess.run(
        [sys.executable, "-I", "-m", "trustd.unprivileged.mds", "--daemon"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode != 0 and "runs as root" in result.stderr


def test_without_a_daemon_mds_register_is_rkts_error_and_nothing_changes(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """rkt's error, with the fix named, exit 254: ``rkt run`` makes no pod; ``run-prepared``
    leaves the pod prepared (rkt checks before the move to run), and it runs once the daemon
    is up. ``--net=none`` cannot reach any daemon: rkt's refusal, daemon or not."""
    result = rkt(shared_dirs, "run", "--mds-register", image)
    assert result.returncode == 254, result.stderr
    assert "could not reach the metadata service" in result.stderr
    assert "rkt metadata-service" in result.stderr and "--mds-register" in result.stderr
    assert json.loads(rkt(shared_dirs, "list", "--format=json", check=True).stdout) == []
    script = 'echo "$AC_METADATA_URL"; wget -q -O - "$AC_METADATA_URL/acMetadata/v1/pod/uuid"'
    prepared = rkt(shared_dirs, "prepare", "--quiet", image, "--exec=/bin/sh", "--", "-c", script)
    uuid = prepared.stdout.strip().splitlines()[-1]
    refused = rkt(shared_dirs, "run-prepared", "--mds-register", uuid)
    assert refused.returncode == 254 and "could not reach the metadata service" in refused.stderr
    pod = shared_dirs.data / "pods/prepared" / uuid
    assert pod.is_dir() and '"mds": true' not in (pod / "private/plan.json").read_text()
    for flags in (("--net=none",), ("--net=none", "--dns=192.0.2.1")):
        none = rkt(shared_dirs, "run", *flags, "--mds-register", image)
        assert none.returncode == 254 and "does not work with --net=none" in none.stderr
    with metadata_service(shared_dirs) as (_, _, port):
        ran = rkt(shared_dirs, "run-prepared", "--mds-register", uuid)
        assert ran.returncode == 0, ran.stderr
        url, served = app_output(ran.stdout).split()
        assert url.startswith(f"http://172.16.28.1:{port}/") and served == uuid
        none = rkt(shared_dirs, "run", "--net=none", "--mds-register", image)
        assert none.returncode == 254 and "does not work with --net=none" in none.stderr


def test_a_daemon_the_pod_cannot_reach_stops_the_pod(
    shared_dirs: ConfigDirs, image: str, daemon: tuple[subprocess.Popen[str], int]
) -> None:
    """A daemon on loopback cannot serve a pod on the pod network: the pod does not start
    (no app runs), the error names both addresses and the fix, and nothing stays registered."""
    result = rkt(shared_dirs, "run", "--mds-register", image, "--exec=/bin/echo", "--", "RAN")
    assert result.returncode == 254, result.stderr
    assert "listens on 127.0.0.1, which this pod cannot reach" in result.stderr
    assert "172.16.28.1" in result.stderr and "--listen-address" in result.stderr
    assert "RAN" not in result.stdout
    assert _pods(shared_dirs) == []


def test_an_app_with_the_daemons_uid_cannot_see_or_signal_it(
    shared_dirs: ConfigDirs, image: str, pod_daemon: tuple[subprocess.Popen[str], int]
) -> None:
    """An image may name any numeric uid, also rkt-mds's, the daemon's: the daemon is
    outside the pod's PID namespace, so the app finds no process of it to signal, trace or
    open through /proc; it is still served."""
    import pwd  # noqa: PLC0415

    proc, _ = pod_daemon
    mds = pwd.getpwnam("rkt-mds")
    script = (
        f"id -u; kill -0 {proc.pid} 2>/dev/null && echo signalled || echo no-signal; "
        f"[ -e /proc/{proc.pid} ] && echo visible || echo hidden; "
        "for d in /proc/[0-9]*; do grep -q '^python' $d/comm 2>/dev/null && "
        f"awk '/^Uid:/ && $2 == {mds.pw_uid} {{f=1}} END {{exit !f}}' $d/status && echo found; "
        "done; "
        'wget -q -O - "$AC_METADATA_URL/acMetadata/v1/pod/uuid" >/dev/null && echo served'
    )
    result = rkt(
        shared_dirs,
        "run",
        "--mds-register",
        image,
        f"--user={mds.pw_uid}",
        f"--group={mds.pw_gid}",
        "--exec=/bin/sh",
        "--",
        "-c",
        script,
    )
    assert result.returncode == 0, result.stderr
    uid, *seen = app_output(result.stdout).split()
    assert uid == str(mds.pw_uid) and _status(proc.pid)["Uid"].split()[0] == uid  # the same
    assert seen == ["no-signal", "hidden", "served"], result.stdout
    assert proc.poll() is None  # the daemon still runs


def _pods(shared_dirs: ConfigDirs) -> list[str]:
    """The UUIDs the daemon has registered (asked as root on its registration socket)."""
    answer = _register(shared_dirs.data / "mds/register.sock", {"pods": {}})
    return [str(u) for u in answer["pods"]]  # type: ignore[attr-defined]


def test_pods_on_the_pod_network_are_served_by_the_host_daemon(
    shared_dirs: ConfigDirs, image: str, pod_daemon: tuple[subprocess.Popen[str], int]
) -> None:
    """Two ``--net=default`` pods served by the host daemon at the network's gateway: each
    gets its uuid, manifests and HMAC from it (no in-pod server); a pod's token names no pod
    from another pod's address; a member of group rkt reaches neither the registration nor a
    pod's metadata; each pod is unregistered when it ends (by exit and by ``rkt stop``)."""
    _, port = pod_daemon
    uuid_file = shared_dirs.data.parent / "uuid"
    with running_pod(
        shared_dirs,
        image,
        "--net=default",
        "--mds-register",
        script='echo "$AC_METADATA_URL"; exec sleep 120',
    ) as other:
        assert other.proc.stdout is not None
        other_url = app_output(other.proc.stdout.readline().decode()).strip()
        assert other_url.startswith(f"http://172.16.28.1:{port}/"), other_url
        other_uuid = other.uuid
        assert other_uuid in _pods(shared_dirs)
        steal = f'wget -q -O - "{other_url}/{API}/pod/uuid" && echo stolen || echo other-refused; '
        result = rkt(
            shared_dirs,
            "run",
            "--net=default",
            "--mds-register",
            f"--uuid-file-save={uuid_file}",
            image,
            "--exec=/bin/sh",
            "--",
            "-c",
            _CHECKS + "; " + steal,
        )
        assert result.returncode == 0, result.stderr
        url, uuid, image_id, *answers = app_output(result.stdout).split()
        assert url.startswith(f"http://172.16.28.1:{port}/")  # the gateway, the daemon's port
        assert uuid == uuid_file.read_text().strip()
        assert image_id.startswith(image)
        assert answers == ["verified", "refused", "no-in-pod-server", "other-refused"]
        assert uuid not in _pods(shared_dirs)  # it exited: unregistered
        # as a real member of group rkt, while the other pod runs
        sock = shared_dirs.data / "mds/register.sock"
        tried = as_member(
            "/usr/bin/python3",
            "-c",
            "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
            "print('CONNECTED')",
            str(sock),
        )
        assert "CONNECTED" not in tried.stdout and "Permission denied" in tried.stderr
        got = as_member(
            "/usr/bin/python3",
            "-c",
            "import sys,urllib.request as u\n"
            "try:\n"
            "  u.urlopen(sys.argv[1], timeout=5); print('GOT')\n"
            "except Exception as e: print(getattr(e, 'code', e))",
            f"{other_url}/{API}/pod/manifest",
        )
        assert got.stdout.split() == ["404"], got.stderr
    assert other_uuid not in _pods(shared_dirs)  # stopped: unregistered

"""Fourth red-team pass: the host metadata daemon's HTTP side and root's CNI sweep, attacked
as a real member of group rkt (``trustd-it-user``, through an unprivileged ``/bin/sh``) or as
any local user.

Each test makes the attack, then asserts what trustd guarantees, counting outcomes (never
timing them). Both holes were open before this pass (the docstrings say what was wrong).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import pwd
import subprocess
import tempfile
import uuid as uuidlib
from pathlib import Path

import pytest

from tests._mds import pod_get
from tests.conftest import ConfigDirs
from tests.integration._attacker import as_member, member, member_popen, stop
from tests.integration.conftest import ensure_user, mds_call, metadata_service
from trustd.privileged.net import _config as config
from trustd.privileged.net import _sweep
from trustd.privileged.net import pod as net_pod
from trustd.unprivileged.mds import _admit

API = "acMetadata/v1"
POD_UUID = "3c0b6f7e-0d4e-4d55-9d0e-7f1b2c3d4e5f"
POD_ADDRESS = "127.0.0.2"  # the fake pod's registered address (loopback: no veth needed)

# The member's flood: connections from many loopback addresses, each starting a request and
# then sending one byte a second (inside the daemon's 5 s read timeout), reconnecting when
# one it held ends. When its stdin closes it prints its counts: refused (503 or reset at once),
# ended (held, then closed by the daemon without an answer), and still held.
_FLOOD = r"""
import select, socket, sys
port, per, sources = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
refused = ended = 0
held = {}
def connect(src):
    s = socket.socket(); s.settimeout(30)
    s.bind((src, 0)); s.connect(("127.0.0.1", port)); s.sendall(b"GET /")
    held[s] = src
def collect(wait, again):
    global refused, ended
    r, _, _ = select.select([sys.stdin, *held], [], [], wait)
    for s in r:
        if s is sys.stdin:
            continue
        src = held.pop(s)
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b"reset"
        s.close()
        if data.startswith(b"HTTP/1.0 503") or data == b"reset":
            refused += 1
        else:
            ended += 1
            if again:  # what it held is taken again: one for one, the count never grows
                connect(src)
    return sys.stdin in r
for src in sources:
    for _ in range(per):
        connect(src)
print("READY", flush=True)
while not collect(1.0, True):
    for s in held:
        try:
            s.send(b"a")
        except OSError:
            pass
collect(0, False)  # what the daemon answered by now: all of it, it accepts in order
print("refused", refused, "ended", ended, "held", len(held), flush=True)
"""


def _fake_pod() -> dict[str, object]:
    manifest = {"acKind": "ImageManifest", "name": "example.com/x", "annotations": []}
    return {
        "register": {
            "uuid": POD_UUID,
            "ip": POD_ADDRESS,
            "pod_manifest": {"acKind": "PodManifest", "apps": [{"name": "x"}]},
            "apps": {
                "x": {
                    "manifest": base64.b64encode(json.dumps(manifest).encode()).decode(),
                    "id": "sha512-" + "0" * 128,
                }
            },
        }
    }


def test_a_flood_of_slow_connections_cannot_starve_a_registered_pod(
    shared_dirs: ConfigDirs,
) -> None:
    """Before: every connection got its own thread for as long as it trickled a byte within
    each 5 s read timeout, with no cap: a member (or any local user, or any pod) could hold
    thousands and take the daemon's threads and file descriptors. Now the member's flood from
    40 addresses is held to the share for unregistered addresses, the rest is refused at
    once, what it holds is ended at the deadline, and the registered pod is answered."""
    sources = [f"127.0.3.{i}" for i in range(1, 41)]
    with metadata_service(shared_dirs, "--listen-address=127.0.0.1") as (_, _, port):
        token = str(mds_call(shared_dirs.data / "mds/register.sock", _fake_pod())["token"])
        flood = member_popen(
            "/usr/bin/python3",
            "-c",
            _FLOOD,
            str(port),
            str(_admit.PER_ADDRESS),
            *sources,
            stdin=subprocess.PIPE,
        )
        try:
            assert flood.stdout is not None and flood.stdin is not None
            assert flood.stdout.readline().strip() == "READY", stop(flood)
            answers = [pod_get(port, token, POD_ADDRESS) for _ in range(5)]
            flood.stdin.close()
            out = flood.stdout.read()
            flood.wait(timeout=120)
        finally:
            if flood.poll() is None:
                stop(flood)
        err = flood.stderr.read() if flood.stderr else ""
    for answer in answers:
        assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(POD_UUID.encode()), answer
    words = out.split()
    assert words[0::2] == ["refused", "ended", "held"], (out, err)
    refused, _, held = (int(w) for w in words[1::2])
    assert refused >= len(sources) * _admit.PER_ADDRESS - _admit.UNREGISTERED_SHARE, out
    assert held <= _admit.UNREGISTERED_SHARE, (out, err)


def test_a_request_line_without_end_is_cut_at_the_cap(shared_dirs: ConfigDirs) -> None:
    """Before: a request line or header could be up to 64 KiB each, 100 headers: 6.5 MiB
    held per connection. Now the request line and headers share MAX_HEAD."""
    with metadata_service(shared_dirs, "--listen-address=127.0.0.1") as (_, _, port):
        head = b"GET /" + b"a" * (_admit.MAX_HEAD + 1024)
        probe = member_popen(
            "/usr/bin/python3",
            "-c",
            "import socket,sys\n"
            "s=socket.create_connection(('127.0.0.1',int(sys.argv[1])),30)\n"
            "s.sendall(sys.argv[2].encode()); out=b''\n"
            "try:\n"
            "  while c:=s.recv(4096): out+=c\n"
            "except ConnectionResetError: pass\n"
            "print(out[:12].decode())",
            str(port),
            head.decode(),
        )
        out, err = probe.communicate(timeout=120)
    assert out.strip() == "HTTP/1.0 431", (out, err)


# --- 2. the CNI sweep: the recorded pods/ path of a pod whose data dir is gone ----------------


def _live_pod(root: Path, uuid: str) -> int:
    """A pod directory as root makes it under ``root/pods/run``, with root's lock held: the
    returned fd holds it."""
    private = root / "pods" / "run" / uuid / "private"
    private.mkdir(parents=True)
    for path in (root / "pods", root / "pods" / "run"):
        path.chmod(0o2750)
    (root / "pods" / "run" / uuid).chmod(0o750)
    private.chmod(0o700)
    fd = os.open(private / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _record(state: Path, uuid: str, pods: Path) -> None:
    doc = {"uuid": uuid, "pods": str(pods), "steps": []}
    (state / f"{uuid}.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("how", ["pod-dir-symlink", "state-dir-symlink"])
def test_a_recreated_data_dir_cannot_keep_a_dead_pods_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], how: str
) -> None:
    """Before: the sweep believed whatever it found at the recorded ``pods/`` path, following
    symlinks: once a dead pod's data dir under /tmp was removed, any local user (here the
    group member) could make its path again with ``pods/run/<uuid>`` pointing at a live pod
    of root's, and root kept the dead pod's addresses, veth and NAT rules for ever. Now the
    record of the pod whose data dir the member made is torn down, with the reason, and the
    live pod's own record is kept."""
    state = tmp_path / "net"
    state.mkdir(mode=0o700)
    monkeypatch.setattr(net_pod, "STATE_DIR", state)
    live_uuid, dead_uuid = str(uuidlib.uuid4()), str(uuidlib.uuid4())
    live_root = tmp_path / "live"
    holder = _live_pod(live_root, live_uuid)
    gone = Path(tempfile.mkdtemp(prefix="trustd-rt4-", dir="/tmp"))  # root's data dir ...
    _record(state, dead_uuid, gone / "pods")
    _record(state, live_uuid, live_root / "pods")
    gone.rmdir()  # ... removed; then made again by the member, pointing at the live pod
    target = live_root / "pods" / "run" / live_uuid
    if how == "pod-dir-symlink":
        plant = 'mkdir -p "$1/pods/run" && ln -s "$2" "$1/pods/run/$3"'
    else:
        plant = 'mkdir -p "$1/pods" "$1/x" && ln -s "$2" "$1/x/$3" && ln -s "$1/x" "$1/pods/run"'
    try:
        member("/bin/sh", "-c", plant, "sh", str(gone), str(target), dead_uuid)
        assert _sweep.pod_alive(live_root / "pods", live_uuid)
        swept = net_pod.sweep()
    finally:
        os.close(holder)
        subprocess.run(["rm", "-rf", str(gone)], check=False)
    assert swept == [dead_uuid]
    assert sorted(p.name for p in state.iterdir()) == [f"{live_uuid}.json"]
    err = capfd.readouterr().err
    assert f"network of pod {dead_uuid}: not believed" in err, err
    assert f"owned by uid {pwd.getpwnam(ensure_user()).pw_uid}" in err, err


def test_a_group_member_cannot_plant_or_redirect_a_network_record() -> None:
    """The record itself is root's: ``/run/trustd/net`` is 0700 root, so a member can
    neither add a record that names a pods/ path of theirs nor change a recorded one."""
    state = net_pod.STATE_DIR
    config.ensure_state_dir(state)
    name = f"{uuidlib.uuid4()}.json"
    tried = as_member(
        "/bin/sh", "-c", 'echo "{}" > "$1/$2" && echo PLANTED', "sh", str(state), name
    )
    assert "PLANTED" not in tried.stdout and "Permission denied" in tried.stderr
    assert not (state / name).exists()

"""Integration tier: runs as root with real parts; skips (with the reason) otherwise."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests._busybox import busybox_aci
from tests._policy import install_policy
from tests.conftest import ConfigDirs, Keys
from trustd.privileged.measure import stop_embedded
from trustd.shared.store import ImageStore

if TYPE_CHECKING:
    from tests._https import LocalServer
    from tests.integration._registry import World

RKT = str(Path(sys.executable).with_name("rkt"))
NAME = "example.com/busybox"


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (integration tier; make test runs it as root in CI)")


_MDS_GUARD = "trustd: metadata service port "


def _mds_guards() -> set[str]:
    if os.geteuid() != 0 or shutil.which("iptables") is None:
        return set()
    rules = subprocess.run(
        ["iptables", "-w", "-S", "OUTPUT"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    return {rule for rule in rules if _MDS_GUARD in rule}


@pytest.fixture(scope="session", autouse=True)
def _remove_metadata_guards_the_tests_added() -> Iterator[None]:
    """``rkt metadata-service`` adds an OUTPUT rule per port that outlives the daemon on
    purpose (ADR 0025 addendum); the tests' daemons listen on free ports, so the session
    removes the rules they added and leaves the host's own."""
    before = _mds_guards()
    yield
    for rule in sorted(_mds_guards() - before):  # "-A OUTPUT ...", quoted as a shell would
        subprocess.run(["iptables", "-w", "-D", *shlex.split(rule)[1:]], check=False)


TEST_USER = "trustd-it-user"


def ensure_user(name: str = TEST_USER) -> str:
    """A real unprivileged system user in group rkt (created once, kept for later runs)."""
    known = subprocess.run(["getent", "passwd", name], capture_output=True, check=False)
    if known.returncode != 0:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--gid",
                "rkt",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            check=True,
        )
    return name


@pytest.fixture
def shared_dirs() -> Iterator[ConfigDirs]:
    """Config and data dirs that other users may traverse (pytest's tmp_path is root-only)."""
    base = Path(tempfile.mkdtemp(prefix="trustd-it-", dir="/tmp"))
    base.chmod(0o755)
    dirs = ConfigDirs(base / "usr-lib-rkt", base / "etc-rkt", base / "var-lib-rkt")
    for d in (dirs.system, dirs.local):
        d.mkdir(mode=0o755)
    install_policy(dirs.system)
    yield dirs
    stop_embedded(dirs.data)  # every pod start measured into an embedded swtpm: stop it
    shutil.rmtree(base, ignore_errors=True)


_APP_PREFIX = re.compile(r"^[a-z0-9-]+\[\d+\]: ", re.MULTILINE)


def app_output(text: str) -> str:
    """Apps' output as they wrote it: ``rkt run`` shows each line as ``<app>[<pid>]: <line>``
    (rkt's stage1 journal format); this drops the prefix."""
    return _APP_PREFIX.sub("", text)


def rkt(dirs: ConfigDirs, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [RKT, *dirs.flags(), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def image(shared_dirs: ConfigDirs, keys: Keys, tmp_path: Path) -> str:
    """A signed busybox image in the store; returns its ID."""
    require_root()
    subprocess.run(["bash", "scripts/setup-groups.sh"], check=True)
    aci = busybox_aci(tmp_path / "bb.aci", NAME)
    keys.gpg.sign(keys.good, aci, tmp_path / "bb.aci.asc")
    trust_good_key(shared_dirs, keys, tmp_path)
    return rkt(shared_dirs, "fetch", "--full", str(aci), check=True).stdout.strip()


def serve_signed_acis(
    srv: LocalServer, keys: Keys, tmp_path: Path, names: Sequence[str], etag: str | None = None
) -> dict[str, str]:
    """A busybox ACI of each name, signed by the good key, served by ``srv`` with its
    signature beside it (``etag``: the ACI's ETag, ``{}`` for its file name; a request
    naming it in If-None-Match gets a 304); returns each name's URL."""
    from tests._https import reply  # noqa: PLC0415

    urls = {}
    for name in names:
        aci = busybox_aci(tmp_path / f"{name.rpartition('/')[2]}.aci", name)
        keys.gpg.sign(keys.good, aci, Path(f"{aci}.asc"))
        tag = None if etag is None else etag.format(aci.name)
        full = reply(aci.read_bytes(), headers={"ETag": tag} if tag else None)
        unchanged = reply(b"", status=304)

        def handle(req: Any, full: Any = full, unchanged: Any = unchanged, tag: Any = tag) -> None:
            hit = tag is not None and req.headers.get("If-None-Match") == tag
            (unchanged if hit else full)(req)

        srv.routes[f"/{aci.name}"] = handle
        srv.routes[f"/{aci.name}.asc"] = reply(Path(f"{aci}.asc").read_bytes())
        urls[name] = srv.url(f"/{aci.name}")
    return urls


def trust_good_key(dirs: ConfigDirs, keys: Keys, tmp_path: Path) -> None:
    """``rkt trust`` the good test key for prefix ``example.com`` (written to ``k.asc``)."""
    key = tmp_path / "k.asc"
    key.write_bytes(keys.public(keys.good))
    rkt(dirs, "trust", "--prefix", "example.com", "--skip-fingerprint-review", str(key), check=True)


def _execed(pidfile: Path, comm: str) -> bool:
    try:
        return Path(f"/proc/{pidfile.read_text().strip()}/comm").read_text().strip() == comm
    except (OSError, ValueError):
        return False


@dataclass
class RunningPod:
    """A pod started by :func:`running_pod`: its UUID, its ``rkt run`` process and its
    ``rkt list --format=json`` entry (``networks`` included) once its app runs."""

    uuid: str
    proc: subprocess.Popen[bytes]
    listed: dict[str, object]

    @property
    def path(self) -> Path:
        return Path(str(self.listed["_path"]))


@contextlib.contextmanager
def running_pod(
    dirs: ConfigDirs,
    image: str,
    *pod_flags: str,
    script: str = "exec sleep 600",
    comm: str = "sleep",
    prefix: Sequence[str] = (),
) -> Iterator[RunningPod]:
    """``rkt run [pod_flags] IMAGE --exec=/bin/sh -- -c SCRIPT`` in the background, yielded
    once its app has exec'd ``comm`` and ``rkt list`` shows the pod running; stopped
    (``rkt stop --force``) and reaped after. ``prefix`` runs before ``rkt`` (e.g. an fd set
    up by a shell)."""
    uuid_file = dirs.data.parent / f"uuid-{secrets.token_hex(4)}"
    proc = subprocess.Popen(
        [
            *prefix,
            *(RKT, *dirs.flags(), "run", *pod_flags, f"--uuid-file-save={uuid_file}", image),
            *("--exec=/bin/sh", "--", "-c", script),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    uuid, entry = "", None
    try:
        for _ in range(1200):  # the app's pid file first (cheap), then rkt list (a process)
            if not uuid and uuid_file.exists():
                uuid = uuid_file.read_text().strip()
            pod = dirs.data / "pods/run" / uuid
            pids = list((pod / "apps").glob("*/pid")) if uuid else []
            if pids and all(_execed(p, comm) for p in pids):
                listed = json.loads(rkt(dirs, "list", "--format=json", check=True).stdout)
                entry = next((p for p in listed if p["name"] == uuid), None)
                if entry and entry["state"] == "running":
                    entry["_path"] = str(pod)
                    break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"pod {uuid or '?'} did not get running")
        assert entry is not None and proc.poll() is None, proc.communicate()
        yield RunningPod(uuid, proc, entry)
    finally:
        if uuid:
            rkt(dirs, "stop", "--force", uuid)
        if proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=60)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def mds_call(path: Path, doc: dict[str, object]) -> dict[str, object]:
    """One request to the metadata service's registration socket (as root)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        s.sendall(json.dumps(doc).encode() + b"\n")
        s.shutdown(socket.SHUT_WR)
        answer: dict[str, object] = json.loads(s.makefile("rb").read())
        return answer


def start_metadata_service(dirs: ConfigDirs, *flags: str) -> tuple[subprocess.Popen[str], str, int]:
    """``rkt metadata-service`` started as root on a free port, once it answers on its
    registration socket: (process, address, port). The caller stops it."""
    proc = subprocess.Popen(
        [RKT, *dirs.flags(), "metadata-service", "--listen-port=0", *flags],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "listening on " in line, line + proc.stderr.read()
        address, port = line.split("listening on ", 1)[1].strip().rsplit(":", 1)
        for _ in range(200):  # answering on the registration socket: the daemon runs
            try:
                mds_call(dirs.data / "mds/register.sock", {"pods": {}})
                break
            except (OSError, ValueError):
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.05)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, address, int(port)


# In a --mds-register pod (sh and busybox wget): its uuid and image ID from the service, one a
# line, then "verified" for an HMAC signature the service made and "refused" for a wrong one.
MDS_POD_CHECKS = (
    'M="$AC_METADATA_URL/acMetadata/v1"; '
    'wget -q -O - "$M/pod/uuid"; echo; '
    'wget -q -O - "$M/apps/$AC_APP_NAME/image/id"; echo; '
    'S=$(wget -q -O - --post-data "content=hello" "$M/pod/hmac/sign"); '
    'U=$(wget -q -O - "$M/pod/uuid"); '
    'wget -q -O /dev/null --post-data "content=hello&uuid=$U&signature=$(echo $S | '
    'sed \'s/+/%2B/g; s#/#%2F#g; s/=/%3D/g\')" "$M/pod/hmac/verify" && echo verified; '
    'wget -q -O /dev/null --post-data "content=other&uuid=$U&signature=x" '
    '"$M/pod/hmac/verify" || echo refused; '
)


@contextlib.contextmanager
def metadata_service(
    dirs: ConfigDirs, *flags: str
) -> Iterator[tuple[subprocess.Popen[str], str, int]]:
    """:func:`start_metadata_service`, killed after."""
    proc, address, port = start_metadata_service(dirs, *flags)
    try:
        yield proc, address, port
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The local docker-registry servers and images of :mod:`._registry`, one per test module
    (imported here only when a docker:// test asks: it loads the docker fetch side)."""
    from tests.integration._registry import registry_world  # noqa: PLC0415

    with registry_world(tmp_path_factory) as built:
        yield built


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    """An empty image store of the test's own."""
    return ImageStore.open(tmp_path / "data", create=True)


@pytest.fixture
def root_only() -> Iterator[Path]:
    """A root-only directory (0700 root:root, standing for /etc): nothing another user may
    create in it."""
    base = Path(tempfile.mkdtemp(prefix="trustd-victim-", dir="/tmp"))
    base.chmod(0o700)
    yield base
    subprocess.run(["rm", "-rf", str(base)], check=False)


@pytest.fixture
def sticky_tmp() -> Iterator[Path]:
    """A world-writable sticky directory like /tmp (where admins export to)."""
    base = Path(tempfile.mkdtemp(prefix="trustd-sticky-", dir="/tmp"))
    base.chmod(0o1777)
    yield base
    subprocess.run(["rm", "-rf", str(base)], check=False)

"""``docker://`` against Debian's real ``docker-registry`` (CONVENTIONS 13).

One module fixture builds images from ``busybox-static`` with umoci (a one-layer image, a
two-layer one whose upper layer has whiteouts and a hard link, an arm64 variant) and pushes
them with skopeo to a plain-HTTP registry on 127.0.0.1; a manifest list naming the amd64 and
arm64 images is PUT with the registry API. Further registries serve the *same storage*: one
over TLS (a trustme certificate, trusted through SSL_CERT_FILE) and one with token auth, whose
realm is a small HTTPS token server here that signs RS256 JWTs (x5c) the registry verifies
against its ``rootcertbundle``. Only two things are fakes, because the real registry cannot
misbehave on purpose: a registry serving a blob whose bytes do not match its digest, and one
that stalls (both ``tests._https.LocalServer``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests._busybox import BUSYBOX
from tests._https import LOCAL_NAMES, LocalServer, reply, stall
from tests.conftest import ConfigDirs
from tests.integration.conftest import RKT
from trustd.docker import DockerFetch, RegistryLimits, fetch_docker
from trustd.errors import RemoteLiedError, TransportError, UserError
from trustd.insecure import Insecure
from trustd.store import ImageStore
from trustd.transport import Limits

TOOLS = ("docker-registry", "skopeo", "umoci")
pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in TOOLS) or not Path(BUSYBOX).exists(),
    reason="needs docker-registry, skopeo, umoci and busybox-static (make setup installs them)",
)
LIST_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"
USER, PASSWORD = "puller", "s3cret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    host: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def start_registry(work: Path, storage: Path, extra: str = "", scheme: str = "http") -> Registry:
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    config = work / "config.yml"
    config.write_text(
        "version: 0.1\nlog: {level: warn}\n"
        f"storage:\n  filesystem: {{rootdirectory: {storage}}}\n  delete: {{enabled: true}}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{extra}"
    )
    log = work / "log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=out, stderr=out)
    reg = Registry(f"127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return reg
        except OSError:
            time.sleep(0.05)
    reg.stop()
    raise RuntimeError(f"docker-registry did not start: {log.read_text()}")


def run(*cmd: str, cwd: Path | None = None) -> str:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, f"{cmd}: {result.stderr}"
    return result.stdout


def build_images(work: Path) -> Path:
    """An OCI layout with tags base (1 layer), multi (2 layers), arm (arm64 config)."""
    rootless = [] if os.geteuid() == 0 else ["--rootless"]
    layout = work / "layout"
    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", f"{layout}:base")
    bundle = work / "b1"
    run("umoci", "unpack", *rootless, "--image", f"{layout}:base", str(bundle))
    root = bundle / "rootfs"
    for d in ("bin", "etc", "var/cache"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    for applet in ("sh", "echo", "cat", "ls"):
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "gone").write_text("bye\n")
    (root / "var" / "cache" / "c").write_text("c\n")
    run("umoci", "repack", "--image", f"{layout}:base", str(bundle))
    config = ("--config.cmd", "/bin/sh", "--config.workingdir", "/", "--os", "linux")
    run("umoci", "config", "--image", f"{layout}:base", *config, "--architecture", "amd64")
    run(
        "umoci",
        "config",
        "--image",
        f"{layout}:base",
        "--tag",
        "arm",
        *config,
        "--architecture",
        "arm64",
        "--config.label",
        "platform=arm64",
    )
    bundle2 = work / "b2"
    run("umoci", "unpack", *rootless, "--image", f"{layout}:base", str(bundle2))
    root2 = bundle2 / "rootfs"
    (root2 / "etc" / "gone").unlink()
    os.link(root2 / "bin" / "busybox", root2 / "bin" / "hardbox")
    shutil.rmtree(root2 / "var" / "cache")
    run("umoci", "repack", "--image", f"{layout}:multi", str(bundle2))
    return layout


def put_manifest_list(host: str, repo: str, tag: str, entries: list[dict[str, Any]]) -> None:
    body = json.dumps({"schemaVersion": 2, "mediaType": LIST_TYPE, "manifests": entries}).encode()
    req = urllib.request.Request(
        f"http://{host}/v2/{repo}/manifests/{tag}",
        data=body,
        method="PUT",
        headers={"Content-Type": LIST_TYPE},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        assert resp.status == 201


def manifest_entry(host: str, repo: str, tag: str, arch: str) -> dict[str, Any]:
    req = urllib.request.Request(
        f"http://{host}/v2/{repo}/manifests/{tag}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        body = resp.read()
        media = resp.headers["Content-Type"]
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    return {
        "mediaType": media,
        "digest": digest,
        "size": len(body),
        "platform": {"os": "linux", "architecture": arch},
    }


@dataclass
class World:
    layout: Path
    storage: Path
    plain: Registry
    work: Path
    arm_digest: str
    amd_digest: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("docker")
    work.chmod(0o755)
    storage = work / "storage"
    storage.mkdir()
    plain = start_registry(work / "plain", storage)
    try:
        layout = build_images(work)
        for tag, dest in (
            ("base", "busybox:latest"),
            ("multi", "busybox:multi"),
            ("arm", "busybox:arm"),
            ("base", "busybox:v2s2"),
        ):
            fmt = ["--format", "v2s2"] if dest.endswith(("v2s2", "arm")) else []
            run(
                "skopeo",
                "copy",
                "--quiet",
                *fmt,
                "--dest-tls-verify=false",
                f"oci:{layout}:{tag}",
                f"docker://{plain.host}/{dest}",
            )
        amd = manifest_entry(plain.host, "busybox", "v2s2", "amd64")
        arm = manifest_entry(plain.host, "busybox", "arm", "arm64")
        put_manifest_list(plain.host, "busybox", "multiarch", [arm, amd])
        yield World(layout, storage, plain, work, arm["digest"], amd["digest"])
    finally:
        plain.stop()


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore.open(tmp_path / "data", create=True)


def job(
    store: ImageStore, insecure: Insecure = Insecure.IMAGE | Insecure.HTTP, **kw: Any
) -> DockerFetch:
    return DockerFetch(store=store, insecure=insecure, **kw)


def aci_names(store: ImageStore, key: str) -> dict[str, tarfile.TarInfo]:
    record = store.index.by_key_prefix(key)[0]
    path, _ = store.original(record)
    with tarfile.open(path) as tar:
        return {m.name: m for m in tar}


def test_plain_http_fetch_converts_and_records_the_digest(world: World, store: ImageStore) -> None:
    record = fetch_docker(f"docker://{world.plain.host}/busybox", job(store))
    assert record.name == f"127.0.0.1-{world.plain.host.split(':')[1]}/busybox"
    assert record.label("version") == "latest" and record.label("arch") == "amd64"
    assert record.provenance.insecure and record.provenance.source_digest.startswith("sha256:")
    assert record.source == f"docker://{world.plain.host}/busybox:latest"
    names = aci_names(store, record.key)
    assert names["rootfs/bin/sh"].issym() and names["rootfs/bin/busybox"].isfile()
    assert list(store.layout.tmp.iterdir()) == []  # layer blobs removed after conversion


def test_http_needs_the_insecure_option(world: World, store: ImageStore) -> None:
    with pytest.raises(TransportError) as err:
        fetch_docker(f"docker://{world.plain.host}/busybox", job(store, Insecure.IMAGE))
    assert "--insecure-options=http" in err.value.hint
    assert store.images() == []


def test_digest_pinned_reference_is_recorded_as_such(world: World, store: ImageStore) -> None:
    ref = f"docker://{world.plain.host}/busybox@{world.amd_digest}"
    record = fetch_docker(ref, job(store))
    assert record.source == ref and record.provenance.source_digest == world.amd_digest
    assert record.label("version") is None


def test_multi_layer_whiteouts_and_hard_links(world: World, store: ImageStore) -> None:
    record = fetch_docker(f"docker://{world.plain.host}/busybox:multi", job(store))
    names = aci_names(store, record.key)
    assert "rootfs/etc/gone" not in names and not any(".wh." in n for n in names)
    assert not any(n.startswith("rootfs/var/cache") for n in names)
    links = {names["rootfs/bin/hardbox"].linkname, names["rootfs/bin/busybox"].linkname}
    assert links & {"rootfs/bin/busybox", "rootfs/bin/hardbox"}  # one is a hard link to the other


def test_manifest_list_picks_this_hosts_platform(world: World, store: ImageStore) -> None:
    record = fetch_docker(f"docker://{world.plain.host}/busybox:multiarch", job(store))
    assert record.label("arch") == "amd64"
    assert record.provenance.source_digest == world.amd_digest


def test_tls_registry_with_a_trustme_certificate(
    world: World, store: ImageStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert(*LOCAL_NAMES)
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    tls = f"  tls:\n    certificate: {tmp_path / 'cert.pem'}\n    key: {tmp_path / 'key.pem'}\n"
    reg = start_registry(tmp_path / "tls", world.storage, tls)
    try:
        with pytest.raises(TransportError, match="certificate"):
            fetch_docker(f"docker://{reg.host}/busybox", job(store, Insecure.IMAGE))
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
        record = fetch_docker(f"docker://{reg.host}/busybox", job(store, Insecure.IMAGE))
        assert record.label("arch") == "amd64"
    finally:
        reg.stop()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """Signs registry tokens (RS256, x5c) with a self-signed certificate."""

    def __init__(self, directory: Path) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trustd test token issuer")])
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.bundle = directory / "token-root.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def token(self, scope: str) -> str:
        kind, name, actions = scope.split(":")
        header = {
            "typ": "JWT",
            "alg": "RS256",
            "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        now = int(time.time())
        claims = {
            "iss": "trustd-test-issuer",
            "sub": USER,
            "aud": "trustd-test",
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": os.urandom(8).hex(),
            "access": [{"type": kind, "name": name, "actions": actions.split(",")}],
        }
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        sig = self.key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing}.{_b64(sig)}"


def test_token_auth_with_dockerauth_credentials(
    world: World, store: ImageStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trustd.fetch._auth import docker_credentials  # noqa: PLC0415

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    issuer = TokenIssuer(tmp_path)
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    with LocalServer(tls=ca.issue_cert(*LOCAL_NAMES)) as realm:

        def token(req: Any) -> None:
            query = dict(p.split("=", 1) for p in req.path.split("?", 1)[1].split("&"))
            if req.headers.get("Authorization") != expected:
                reply(b"{}", status=401)(req)
                return
            scope = urllib.parse.unquote(query["scope"])
            reply(json.dumps({"token": issuer.token(scope)}).encode())(req)

        realm.routes["/token"] = token
        auth = (
            "auth:\n  token:\n"
            f"    realm: {realm.url('/token')}\n    service: trustd-test\n"
            f"    issuer: trustd-test-issuer\n    rootcertbundle: {issuer.bundle}\n"
        )
        reg = start_registry(tmp_path / "token", world.storage, auth)
        try:
            with pytest.raises(TransportError, match="token server"):
                fetch_docker(f"docker://{reg.host}/busybox", job(store))
            config = tmp_path / "etc-rkt"
            (config / "auth.d").mkdir(parents=True)
            (config / "auth.d" / "reg.json").write_text(
                json.dumps(
                    {
                        "rktKind": "dockerAuth",
                        "rktVersion": "v1",
                        "registries": [reg.host],
                        "credentials": {"user": USER, "password": PASSWORD},
                    }
                )
            )
            creds = lambda host: docker_credentials(host, (config,))  # noqa: E731
            record = fetch_docker(f"docker://{reg.host}/busybox", job(store, credentials=creds))
            assert record.label("arch") == "amd64"
            assert any(r.headers.get("authorization") == expected for r in realm.recorded)
        finally:
            reg.stop()


def test_blob_with_a_wrong_digest_is_refused_and_nothing_is_stored(store: ImageStore) -> None:
    config = json.dumps({"os": "linux", "architecture": "amd64", "config": {}}).encode()
    layer = b"not the layer the manifest names"
    claimed = "sha256:" + hashlib.sha256(b"the real layer").hexdigest()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": claimed,
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    with LocalServer() as srv:
        srv.routes["/v2/"] = reply(b"{}")
        srv.routes["/v2/bad/manifests/latest"] = reply(
            manifest, headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
        )
        srv.routes[f"/v2/bad/blobs/{config_digest}"] = reply(config)
        srv.routes[f"/v2/bad/blobs/{claimed}"] = reply(layer)
        with pytest.raises(RemoteLiedError, match="digest mismatch"):
            fetch_docker(f"docker://127.0.0.1:{srv.port}/bad", job(store))
    assert store.images() == [] and list(store.layout.tmp.iterdir()) == []


def test_a_stalled_registry_times_out_cleanly(store: ImageStore) -> None:
    short = Limits(max_bytes=1 << 20, connect_timeout=1, total_timeout=1.5)
    with LocalServer() as srv:
        srv.routes["/v2/"] = stall()
        started = time.monotonic()
        with pytest.raises(TransportError, match=r"did not finish|timed out"):
            fetch_docker(
                f"docker://127.0.0.1:{srv.port}/slow",
                job(store, limits=RegistryLimits(small=short, blob=short)),
            )
        assert time.monotonic() - started < 8
    assert store.images() == []


def test_unsigned_image_is_refused_with_rkts_message(world: World, config_dirs: ConfigDirs) -> None:
    result = subprocess.run(
        [
            RKT,
            *config_dirs.flags(),
            "--insecure-options=http",
            "fetch",
            f"docker://{world.plain.host}/busybox",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 254
    assert (
        "signature verification for docker images is not supported "
        "(try --insecure-options=image)" in result.stderr
    )


def test_rkt_fetch_and_run_a_docker_image(world: World, shared_dirs: ConfigDirs) -> None:
    if os.geteuid() != 0:
        pytest.skip("rkt run needs root (integration tier)")
    subprocess.run(["bash", "scripts/setup-groups.sh"], check=True)
    url = f"docker://{world.plain.host}/busybox"
    flags = [RKT, *shared_dirs.flags(), "--insecure-options=image,http"]
    fetched = subprocess.run(
        [*flags, "fetch", url], capture_output=True, text=True, check=False, timeout=60
    )
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.strip().startswith("sha512-")
    ran = subprocess.run(
        [*flags, "run", url, "--exec=/bin/sh", "--", "-c", "echo hello from docker; ls /bin"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert ran.returncode == 0, ran.stderr
    assert "hello from docker" in ran.stdout and "busybox" in ran.stdout


def test_oci_layout_and_docker_archive_sources(world: World, store: ImageStore) -> None:
    """``oci:DIR:TAG`` (umoci's layout) and ``docker-archive:`` (skopeo's docker save format)."""
    multi = fetch_docker(f"oci:{world.layout}:multi", job(store, Insecure.IMAGE))
    assert multi.label("version") == "multi" and multi.provenance.source_digest.startswith(
        "sha256:"
    )
    names = aci_names(store, multi.key)
    assert "rootfs/etc/gone" not in names and "rootfs/bin/hardbox" in names
    archive = world.work / "saved.tar"
    if not archive.exists():
        run(
            "skopeo",
            "copy",
            "--quiet",
            f"oci:{world.layout}:base",
            f"docker-archive:{archive}:example/saved:v1",
        )
    saved = fetch_docker(f"docker-archive:{archive}", job(store, Insecure.IMAGE))
    assert saved.name == "example/saved" and saved.label("version") == "v1"
    assert aci_names(store, saved.key)["rootfs/bin/busybox"].isfile()
    with pytest.raises(UserError, match="no single image"):
        fetch_docker(f"oci:{world.layout}:nosuchtag", job(store, Insecure.IMAGE))

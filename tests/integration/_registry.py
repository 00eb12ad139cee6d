"""Shared by the ``docker://`` tests: Debian's real ``docker-registry`` (CONVENTIONS 13).

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

import hashlib
import json
import os
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests._busybox import BUSYBOX
from trustd.shared.insecure import Insecure
from trustd.shared.store import ImageStore
from trustd.unprivileged.docker import DockerFetch

TOOLS = ("docker-registry", "skopeo", "umoci")
needs_registry_tools = pytest.mark.skipif(
    any(shutil.which(t) is None for t in TOOLS) or not Path(BUSYBOX).exists(),
    reason="needs docker-registry, skopeo, umoci and busybox-static (make setup installs them)",
)
LIST_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    host: str
    proc: subprocess.Popen[bytes]
    log: Path

    def gets(self, part: str) -> int:
        """How many GET requests for a path containing ``part`` the access log shows."""
        return sum(
            1 for line in self.log.read_text().splitlines() if '"GET /v2/' in line and part in line
        )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def start_registry(
    work: Path, storage: Path, extra: str = "", scheme: str = "http", log_level: str = "warn"
) -> Registry:
    """``log_level="info"`` logs every request (``Registry.gets`` counts them)."""
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    config = work / "config.yml"
    config.write_text(
        f"version: 0.1\nlog: {{level: {log_level}}}\n"
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


@contextmanager
def registry_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Images built with umoci, pushed by skopeo to a plain-HTTP registry, with a manifest list."""
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


def job(
    store: ImageStore, insecure: Insecure = Insecure.IMAGE | Insecure.HTTP, **kw: Any
) -> DockerFetch:
    return DockerFetch(store=store, insecure=insecure, **kw)


def aci_names(store: ImageStore, key: str) -> dict[str, tarfile.TarInfo]:
    record = store.index.by_key_prefix(key)[0]
    path, _ = store.original(record)
    with tarfile.open(path) as tar:
        return {m.name: m for m in tar}

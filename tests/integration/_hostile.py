"""A small hostile Docker registry for the tests of issue #12 (CONVENTIONS 13).

Debian's ``docker-registry`` cannot misbehave on purpose, so this is a registry API v2 on
``tests._https.LocalServer`` (a real HTTP server on 127.0.0.1) that serves real images —
gzip'd tar layers and a config built here, every digest real — and lets a test replace any
answer: a layer whose descriptor declares a huge size, an endless or trickling body, a
manifest list whose entry lies about the platform, a 401 whose Bearer realm is another host.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests._https import Handler, LocalServer, reply
from trustd.shared.store import ImageStore

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
LIST_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"
LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A gzip'd tar layer holding ``files`` and its diff_id (the digest of the plain tar)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            tar.addfile(info, io.BytesIO(data))
    plain = raw.getvalue()
    return gzip.compress(plain, compresslevel=6, mtime=0), sha256(plain)


@dataclass
class Image:
    manifest: bytes
    digest: str
    config_digest: str
    layer_digests: list[str]


@dataclass
class Hostile:
    """The registry; ``server.recorded`` shows every request (path and headers)."""

    server: LocalServer
    host: str
    images: dict[str, Image] = field(default_factory=dict)

    def route(self, path: str, handler: Handler) -> None:
        self.server.routes[path] = handler

    def blob(self, repo: str, data: bytes, handler: Handler | None = None) -> str:
        digest = sha256(data)
        self.route(f"/v2/{repo}/blobs/{digest}", handler or reply(data))
        return digest

    def push(
        self,
        repo: str,
        tag: str,
        layers: list[dict[str, bytes]],
        *,
        arch: str = "amd64",
        sizes: dict[int, int] | None = None,
        handlers: dict[int, Handler] | None = None,
    ) -> Image:
        """An image; ``sizes`` overrides a layer descriptor's size, ``handlers`` its body."""
        descriptors, diff_ids, digests = [], [], []
        for i, files in enumerate(layers):
            data, diff_id = layer(files)
            digest = self.blob(repo, data, (handlers or {}).get(i))
            size = (sizes or {}).get(i, len(data))
            descriptors.append({"mediaType": LAYER_TYPE, "size": size, "digest": digest})
            diff_ids.append(diff_id)
            digests.append(digest)
        config = json.dumps(
            {
                "architecture": arch,
                "os": "linux",
                "config": {"Cmd": ["/bin/sh"]},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }
        ).encode()
        config_digest = self.blob(repo, config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": {"mediaType": CONFIG_TYPE, "size": len(config), "digest": config_digest},
                "layers": descriptors,
            }
        ).encode()
        image = Image(manifest, sha256(manifest), config_digest, digests)
        self.manifest(repo, tag, manifest, MANIFEST_TYPE)
        self.manifest(repo, image.digest, manifest, MANIFEST_TYPE)
        self.images[f"{repo}:{tag}"] = image
        return image

    def manifest(self, repo: str, ref: str, body: bytes, media: str) -> None:
        headers = {"Content-Type": media, "Docker-Content-Digest": sha256(body)}
        self.route(f"/v2/{repo}/manifests/{ref}", reply(body, headers=headers))

    def manifest_list(self, repo: str, tag: str, entries: list[tuple[Image, str]]) -> None:
        """A list naming each image for ``linux/<arch>`` as given (true or not)."""
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": LIST_TYPE,
                "manifests": [
                    {
                        "mediaType": MANIFEST_TYPE,
                        "digest": image.digest,
                        "size": len(image.manifest),
                        "platform": {"os": "linux", "architecture": arch},
                    }
                    for image, arch in entries
                ],
            }
        ).encode()
        self.manifest(repo, tag, body, LIST_TYPE)

    def gets(self, part: str) -> int:
        return sum(1 for r in self.server.recorded if part in r.path)


@contextmanager
def hostile_registry(tls: Any = None) -> Iterator[Hostile]:
    with LocalServer(tls=tls) as server:
        server.routes["/v2/"] = reply(b"{}", headers={"Content-Type": "application/json"})
        yield Hostile(server, f"127.0.0.1:{server.port}")


def endless(chunk: int = 64 * 1024, before: Callable[[int], None] | None = None) -> Handler:
    """A 200 with no Content-Length and a body of zeros that never ends (until the client
    hangs up or the server stops). ``before(n)`` runs before each chunk, ``n`` bytes sent."""

    def handle(req: Any) -> None:
        req.send_response(200)
        req.send_header("Connection", "close")
        req.end_headers()
        sent = 0
        try:
            while not req.server.owner.stop.is_set():
                if before is not None:
                    before(sent)
                req.wfile.write(b"\0" * chunk)
                sent += chunk
        except OSError:
            return

    return handle


def snapshot(store: ImageStore) -> tuple[list[str], list[tuple[str, int]]]:
    """What a refusal must leave unchanged: the stored images and every file under the
    store (name and size), the index included."""
    files = []
    for dirpath, _dirs, names in os.walk(store.layout.root):
        for name in names:
            path = Path(dirpath) / name
            if path.name.endswith(("-journal", "-wal", "-shm")):
                continue
            files.append((str(path.relative_to(store.layout.root)), path.lstat().st_size))
    return sorted(r.key for r in store.images()), sorted(files)


def fill(where: Path) -> Path:
    """Write zeros to ``where/filler`` until the file system holding it is full."""
    filler = where / "filler"
    with filler.open("ab", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler

"""The stage1 as an image (docs/adr/0018-stage1-image.md): one ACI per flavor,
generated from the shipped descriptor, byte for byte the same in every install.

rkt stores the stage1 ACI it runs, so ``image list`` shows it and ``image gc`` keeps it.
trustd's stage1 is code in the package (``trustd.privileged.executor.stage1``) steered by a
descriptor in ``trustd/shared/data/stage1/``; its image is that descriptor wrapped as an ACI:
``manifest`` (name and version from the descriptor, the flavor, the entrypoint and the
descriptor's digest) and ``rootfs/trustd/stage1.json`` (the descriptor's bytes). The tar is
deterministic (sorted, mtime 0, owner 0:0, USTAR), so its image ID names exactly that
descriptor and is what the pod-start measurement records.

Root never reads the store's copy (group rkt can write the store): it derives the image and
its ID from the package data here, each time.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import tarfile

from trustd.shared._dataclass import frozen
from trustd.shared.errors import LocalStateError
from trustd.shared.shipped import stage1_descriptor
from trustd.shared.vocab import FLAVORS, Flavor

AC_VERSION = "0.8.11"
DESCRIPTOR_PATH = "rootfs/trustd/stage1.json"
SOURCE = "trustd package data"  # the store record's source: not fetched from anywhere


@frozen
class Stage1Image:
    flavor: Flavor
    name: str
    version: str
    descriptor_digest: str  # sha256-<hex> of the descriptor file
    archive: bytes  # the uncompressed ACI

    @property
    def image_id(self) -> str:
        """``sha512-`` and the 128-hex digest of the archive, as for any stored image."""
        return "sha512-" + hashlib.sha512(self.archive).hexdigest()


def _member(tar: tarfile.TarFile, name: str, data: bytes | None) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if data is None:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
    else:
        info.mode = 0o644
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def _manifest(descriptor: dict[str, object], digest: str) -> bytes:
    entrypoint = str(descriptor["entrypoint"])
    # trustd's own annotations only: rkt's coreos.com/rkt/stage1/* name executables in the
    # rootfs and an interface version, which this image does not provide (docs/compat.md)
    annotations = {
        "trustd.io/stage1/entrypoint": entrypoint,
        "trustd.io/stage1/flavor": str(descriptor["flavor"]),
        "trustd.io/stage1/descriptor-digest": digest,
    }
    manifest = {
        "acKind": "ImageManifest",
        "acVersion": AC_VERSION,
        "name": descriptor["name"],
        "labels": [
            {"name": "version", "value": str(descriptor["version"])},
            {"name": "os", "value": "linux"},
        ],
        "annotations": [{"name": k, "value": v} for k, v in sorted(annotations.items())],
    }
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


@functools.cache
def stage1_image(flavor: Flavor) -> Stage1Image:
    """The flavor's stage1 ACI, built from the shipped descriptor (cached per process)."""
    path = stage1_descriptor(flavor)
    try:
        body = path.read_bytes()
        descriptor = json.loads(body)
        name, version = str(descriptor["name"]), str(descriptor["version"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LocalStateError(
            f"stage1 descriptor {path} cannot be read: {exc}",
            hint="trustd's installation is incomplete; reinstall it (make install)",
        ) from exc
    digest = "sha256-" + hashlib.sha256(body).hexdigest()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _member(tar, "manifest", _manifest(descriptor, digest))
        _member(tar, "rootfs", None)
        _member(tar, "rootfs/trustd", None)
        _member(tar, DESCRIPTOR_PATH, body)
    return Stage1Image(flavor, name, version, digest, out.getvalue())


def stage1_image_ids() -> frozenset[str]:
    """The image IDs of every shipped flavor (what ``image gc`` keeps)."""
    return frozenset(stage1_image(f).image_id for f in FLAVORS)

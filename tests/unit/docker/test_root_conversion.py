"""Root's own conversion of a signed docker image (trustd/privileged/treestore/_docker.py).

The fetch side's squash writes an ACI from real layers; the blobs are laid out under a real
``cas`` directory as the store keeps them, and root's check opens them beneath the ``cas``
fd (openat2) and squashes them again: it passes only for exactly that ACI.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.docker._layers import CONFIG, E, layer, openers
from trustd.privileged.treestore._docker import check_conversion
from trustd.shared.appc.manifest import ImageManifest, parse_image_manifest
from trustd.shared.docker._squash import SquashLimits
from trustd.shared.docker.convert import Origin, convert
from trustd.shared.errors import LocalStateError
from trustd.shared.imageid import StoreKey
from trustd.shared.ocisig.evidence import Evidence
from trustd.shared.store._layout import docker_blob_name

REGISTRY, REPO = "127.0.0.1:5000", "ns/app"
LAYERS = (
    layer(E("bin/", "dir"), E("bin/hello", data=b"#!/bin/sh\necho hi\n", mode=0o755)),
    layer(E("etc/motd", data=b"signed\n"), compress="zstd"),
)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _manifest(config: bytes, layers: tuple[bytes, ...]) -> bytes:
    def desc(media: str, data: bytes) -> dict[str, object]:
        return {"mediaType": media, "digest": _sha256(data), "size": len(data)}

    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": desc("application/vnd.oci.image.config.v1+json", config),
            "layers": [desc("application/vnd.oci.image.layer.v1.tar+gzip", b) for b in layers],
        }
    ).encode()


@dataclass
class Stored:
    cas: Path
    key: StoreKey
    evidence: bytes
    aci: ImageManifest
    manifest: bytes

    @property
    def blob_dir(self) -> Path:
        return self.cas / self.key.blob_relpath

    def check(self, key: StoreKey | None = None, limits: SquashLimits | None = None) -> None:
        fd = os.open(self.cas, os.O_RDONLY | os.O_DIRECTORY)
        try:
            check_conversion(fd, key or self.key, self.evidence, self.aci, limits)
        finally:
            os.close(fd)


def _store(cas: Path, aci: bytes, blobs: dict[str, bytes], evidence: bytes) -> StoreKey:
    key = StoreKey.parse("sha512-" + hashlib.sha512(aci).hexdigest())
    where = cas / key.blob_relpath
    where.mkdir(parents=True)
    (where / "image.aci").write_bytes(aci)
    (where / "image.aci.asc").write_bytes(evidence)
    for digest, data in blobs.items():
        (where / docker_blob_name(digest)).write_bytes(data)
    return key


def _aci_manifest(aci: bytes) -> ImageManifest:
    with tarfile.open(fileobj=io.BytesIO(aci)) as tar:
        member = tar.extractfile("manifest")
        assert member is not None
        return parse_image_manifest(member.read(), source="test")


@pytest.fixture
def stored(tmp_path: Path) -> Iterator[Stored]:
    """A signed image as the fetch side stores it: the ACI, the evidence, config, layers."""
    manifest = _manifest(CONFIG, LAYERS)
    digest = _sha256(manifest)
    origin = Origin(
        name="127.0.0.1-5000/ns/app",
        tag="v1",
        registry_url=REGISTRY,
        repository=REPO,
        original_name=f"{REGISTRY}/{REPO}:v1",
        image_id=_sha256(CONFIG),
        manifest_hash=digest,
    )
    out = io.BytesIO()
    convert(openers(*LAYERS), CONFIG, origin, out, label="test")
    aci = out.getvalue()
    evidence = Evidence(f"{REGISTRY}/{REPO}:v1", manifest, (b"unused here",)).encode()
    blobs = {_sha256(CONFIG): CONFIG, **{_sha256(b): b for b in LAYERS}}
    cas = tmp_path / "cas"
    key = _store(cas, aci, blobs, evidence)
    yield Stored(cas, key, evidence, _aci_manifest(aci), manifest)


def test_roots_squash_of_the_signed_layers_is_the_stored_aci(stored: Stored) -> None:
    stored.check()  # no refusal: the same layers give the same bytes


def test_an_aci_with_other_content_is_not_the_conversion(stored: Stored, tmp_path: Path) -> None:
    aci = (stored.blob_dir / "image.aci").read_bytes()
    forged = bytearray(aci)
    at = forged.index(b"signed\n")
    forged[at : at + 7] = b"forged\n"
    other = _store(tmp_path / "cas2", bytes(forged), {}, stored.evidence)
    for blob in stored.blob_dir.iterdir():
        if blob.name.startswith("sha256-"):
            (tmp_path / "cas2" / other.blob_relpath / blob.name).write_bytes(blob.read_bytes())
    with pytest.raises(LocalStateError, match="is not the conversion of the signed") as exc:
        Stored(tmp_path / "cas2", other, stored.evidence, stored.aci, stored.manifest).check()
    assert f"rkt image rm {other.id[:39]}" in (exc.value.hint or "")


@pytest.mark.parametrize("which", [0, 1])
def test_a_tampered_layer_is_refused_by_its_signed_digest(stored: Stored, which: int) -> None:
    name = docker_blob_name(_sha256(LAYERS[which]))
    tampered = bytearray(LAYERS[which])
    tampered[-1] ^= 1
    (stored.blob_dir / name).write_bytes(bytes(tampered))
    with pytest.raises(LocalStateError, match=f"does not have the digest {_sha256(LAYERS[which])}"):
        stored.check()


def test_a_longer_layer_is_refused_at_the_manifests_size(stored: Stored) -> None:
    name = docker_blob_name(_sha256(LAYERS[0]))
    (stored.blob_dir / name).write_bytes(LAYERS[0] + b"\0" * 4096)
    with pytest.raises(LocalStateError, match="is longer than the"):
        stored.check()


def test_a_tampered_config_is_refused(stored: Stored) -> None:
    name = docker_blob_name(_sha256(CONFIG))
    (stored.blob_dir / name).write_bytes(CONFIG.replace(b"/bin/hello", b"/bin/evil!"))
    with pytest.raises(LocalStateError, match=f"does not have the digest {_sha256(CONFIG)}"):
        stored.check()


def test_an_image_stored_without_its_layers_is_refused_with_the_fix(stored: Stored) -> None:
    (stored.blob_dir / docker_blob_name(_sha256(LAYERS[1]))).unlink()
    with pytest.raises(LocalStateError, match="is not in the store") as exc:
        stored.check()
    assert "then fetch it again" in (exc.value.hint or "")


def test_a_symlinked_layer_is_not_followed(stored: Stored, tmp_path: Path) -> None:
    name = docker_blob_name(_sha256(LAYERS[0]))
    outside = tmp_path / "outside"
    outside.write_bytes(LAYERS[0])
    (stored.blob_dir / name).unlink()
    (stored.blob_dir / name).symlink_to(outside)
    with pytest.raises(LocalStateError):
        stored.check()


def test_roots_squash_keeps_the_fetch_sides_limits(stored: Stored) -> None:
    with pytest.raises(LocalStateError, match=r"layer-count-cap"):
        stored.check(limits=SquashLimits(max_layers=1))
    with pytest.raises(LocalStateError, match=r"size-cap"):
        stored.check(limits=SquashLimits(max_uncompressed_size=1024))

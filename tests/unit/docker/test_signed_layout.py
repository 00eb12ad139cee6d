"""The signed-layout helpers (docs/adr/0028): documents read once and hashed as read, layers
copied into locked scratch files while hashed, cosign entries found in the layout's index."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from trustd.shared.docker.documents import (
    COSIGN_IMAGE_KINDS,
    COSIGN_SIGS_KIND,
    OCI_INDEX,
    Descriptor,
    Index,
    Manifest,
    parse_index,
)
from trustd.shared.errors import RemoteLiedError, UserError
from trustd.unprivileged.docker._layout_files import LayoutFiles
from trustd.unprivileged.docker._local import load_oci_manifest, read_verified
from trustd.unprivileged.docker._signed_layout import copied_layers, layout_attachments
from trustd.unprivileged.docker.registry import RegistryLimits

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _blob(layout: Path, data: bytes) -> Descriptor:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return Descriptor(LAYER, f"sha256:{digest}", len(data))


def _layout(tmp_path: Path, index: dict[str, object] | None = None) -> Path:
    layout = tmp_path / "layout"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "index.json").write_text(json.dumps(index or {"schemaVersion": 2, "manifests": []}))
    return layout


def _manifest(*layers: Descriptor) -> Manifest:
    config = Descriptor("application/vnd.oci.image.config.v1+json", "sha256:" + "0" * 64, 2)
    return Manifest("application/vnd.oci.image.manifest.v1+json", config, layers)


def test_layers_are_copied_while_hashed_and_the_copies_removed_afterwards(
    tmp_path: Path,
) -> None:
    layout = _layout(tmp_path)
    one, two = _blob(layout, b"one" * 1000), _blob(layout, b"two" * 3)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    files = LayoutFiles.open(layout)
    try:
        with copied_layers(
            files, _manifest(one, two, one), tmp, RegistryLimits(reserve=0)
        ) as paths:
            assert [p.read_bytes() for p in paths] == [b"one" * 1000, b"two" * 3, b"one" * 1000]
    finally:
        files.close()
    assert not [p for p in tmp.iterdir() if not p.name.endswith(".lock")]


@pytest.mark.parametrize("change", ["longer", "shorter", "other bytes"])
def test_a_layer_that_is_not_its_digest_when_copied_is_refused(tmp_path: Path, change: str) -> None:
    layout = _layout(tmp_path)
    layer = _blob(layout, b"layer" * 100)
    files = LayoutFiles.open(layout)
    path = layout / "blobs" / "sha256" / layer.digest.partition(":")[2]
    with path.open("r+b") as f:  # in place, after the open: the fd sees it
        if change == "longer":
            f.seek(0, 2)
            f.write(b"more")
        elif change == "shorter":
            f.truncate(10)
        else:
            f.write(b"LAYER")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    try:
        with (
            pytest.raises(RemoteLiedError, match="the manifest says 500 bytes"),
            copied_layers(files, _manifest(layer), tmp, RegistryLimits(reserve=0)),
        ):
            pass
    finally:
        files.close()


def test_a_missing_layer_is_named(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    absent = Descriptor(LAYER, "sha256:" + "d" * 64, 3)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    files = LayoutFiles.open(layout)
    try:
        with (
            pytest.raises(UserError, match="is not in the layout"),
            copied_layers(files, _manifest(absent), tmp, RegistryLimits(reserve=0)),
        ):
            pass
    finally:
        files.close()


def test_a_small_blob_is_hashed_as_read(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    blob = _blob(layout, b"{}")
    files = LayoutFiles.open(layout)
    try:
        assert read_verified(files, blob.digest, 2) == b"{}"
        (layout / "blobs" / "sha256" / blob.digest.partition(":")[2]).write_bytes(b"[]")
        with pytest.raises(RemoteLiedError, match="hashes to"):
            read_verified(files, blob.digest, 2)
    finally:
        files.close()


def _sig_manifest(layout: Path, payload: bytes) -> dict[str, object]:
    layer = _blob(layout, payload)
    config = _blob(layout, b"{}")
    doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config.digest, "size": config.size},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                    "digest": layer.digest, "size": layer.size,
                    "annotations": {"dev.cosignproject.cosign/signature": "c2ln"}}],
    }  # fmt: skip
    body = json.dumps(doc).encode()
    desc = _blob(layout, body)
    return {"mediaType": doc["mediaType"], "digest": desc.digest, "size": desc.size}


def test_cosign_entries_are_found_by_their_tag_and_two_are_refused(tmp_path: Path) -> None:
    digest = "sha256:" + "e" * 64
    tag = {"org.opencontainers.image.ref.name": "sha256-" + "e" * 64 + ".sig"}
    layout = _layout(tmp_path)
    entry = {**_sig_manifest(layout, b"payload"), "annotations": tag}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    files = LayoutFiles.open(layout)
    index = parse_index((layout / "index.json").read_bytes(), OCI_INDEX, "index.json")
    try:
        assert layout_attachments(files, index, digest) == [(b"payload", "c2ln")]
        assert layout_attachments(files, index, "sha256:" + "f" * 64) == []
        twice = parse_index(
            json.dumps({"schemaVersion": 2, "manifests": [entry, entry]}).encode(),
            OCI_INDEX,
            "index.json",
        )
        with pytest.raises(RemoteLiedError, match="2 index entries are tagged"):
            layout_attachments(files, twice, digest)
    finally:
        files.close()


def test_cosign_save_entries_are_found_by_their_kind_after_the_tag(tmp_path: Path) -> None:
    """A layout ``cosign save`` wrote has no ``.sig`` tag: its signature image is the entry
    of kind ``dev.cosignproject.cosign/sigs``. A tagged entry still comes first, and an entry
    that has a ref name is never taken by its kind."""
    digest = "sha256:" + "e" * 64
    layout = _layout(tmp_path)
    sigs = {**_sig_manifest(layout, b"saved"), "annotations": {"kind": COSIGN_SIGS_KIND}}
    ref = "org.opencontainers.image.ref.name"
    tagged = {**_sig_manifest(layout, b"tagged"), "annotations": {ref: f"sha256-{'e' * 64}.sig"}}
    named = {**sigs, "annotations": {"kind": COSIGN_SIGS_KIND, ref: "v1"}}

    def index(*entries: dict[str, object]) -> Index:
        doc = {"schemaVersion": 2, "manifests": list(entries)}
        return parse_index(json.dumps(doc).encode(), OCI_INDEX, "index.json")

    files = LayoutFiles.open(layout)
    try:
        assert layout_attachments(files, index(sigs), digest) == [(b"saved", "c2ln")]
        assert layout_attachments(files, index(sigs, tagged), digest) == [(b"tagged", "c2ln")]
        assert layout_attachments(files, index(named), digest) == []
        with pytest.raises(RemoteLiedError, match=r'2 index entries are of kind "dev\.cosign'):
            layout_attachments(files, index(sigs, sigs), digest)
    finally:
        files.close()


def test_an_untagged_fetch_of_a_cosign_save_layout_takes_the_image_kind(tmp_path: Path) -> None:
    """``oci:DIR`` of a layout with several untagged entries and none tagged ``latest``: the
    one entry of kind ``dev.cosignproject.cosign/image``; none or two of them is refused."""
    layout = _layout(tmp_path)
    config = _blob(layout, b"{}")
    media = "application/vnd.oci.image.manifest.v1+json"
    body = json.dumps({"schemaVersion": 2, "mediaType": media, "layers": [], "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": config.digest, "size": config.size}}).encode()  # fmt: skip
    entry = {"mediaType": media, "digest": _blob(layout, body).digest, "size": len(body)}
    image = {**entry, "annotations": {"kind": COSIGN_IMAGE_KINDS[0]}}
    sigs = {**_sig_manifest(layout, b"saved"), "annotations": {"kind": COSIGN_SIGS_KIND}}
    cases = (([sigs, image], True), ([image, sigs, image], False), ([entry, sigs], False))
    for entries, found in cases:
        (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": entries}))
        files = LayoutFiles.open(layout)
        try:
            if found:
                _, digest, data, _ = load_oci_manifest(files, None)
                assert (digest, data) == (entry["digest"], body)
            else:
                with pytest.raises(UserError, match="no single image tagged 'latest'"):
                    load_oci_manifest(files, None)
        finally:
            files.close()

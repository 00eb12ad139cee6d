"""The stage1 as an image (docs/adr/0018): one deterministic ACI per flavor, made from the
shipped descriptor, admitted only as those exact bytes, measured by its image ID."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.unit.test_shipped_data import _plan
from trustd.privileged.executor import _measure
from trustd.shared import shipped
from trustd.shared.appc.aci import AciLimits, inspect_aci
from trustd.shared.errors import LocalStateError
from trustd.shared.stage1image import DESCRIPTOR_PATH, stage1_image, stage1_image_ids
from trustd.shared.store.admit import admit_stage1
from trustd.shared.vocab import FLAVORS, Flavor


def _fresh(flavor: Flavor) -> bytes:
    stage1_image.cache_clear()
    return stage1_image(flavor).archive


@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_image_is_deterministic_and_a_valid_aci(flavor: Flavor, tmp_path: Path) -> None:
    first, second = _fresh(flavor), _fresh(flavor)
    assert first == second
    image = stage1_image(flavor)
    assert image.image_id == "sha512-" + hashlib.sha512(first).hexdigest()
    archive = tmp_path / "stage1.aci"
    archive.write_bytes(first)
    info = inspect_aci(archive, limits=AciLimits())
    assert info.image_id == image.image_id
    assert str(info.manifest.name) == f"trustd.io/stage1/{flavor}"
    assert info.manifest.label("version") == image.version


@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_image_carries_the_descriptor_byte_for_byte(flavor: Flavor) -> None:
    body = shipped.stage1_descriptor(flavor).read_bytes()
    image = stage1_image(flavor)
    with tarfile.open(fileobj=io.BytesIO(image.archive)) as tar:
        inside = tar.extractfile(DESCRIPTOR_PATH)
        assert inside is not None and inside.read() == body
        manifest_file = tar.extractfile("manifest")
        assert manifest_file is not None
        manifest = json.loads(manifest_file.read())
        for member in tar.getmembers():
            assert (member.mtime, member.uid, member.gid) == (0, 0, 0)
    annotations = {a["name"]: a["value"] for a in manifest["annotations"]}
    digest = "sha256-" + hashlib.sha256(body).hexdigest()
    assert annotations["trustd.io/stage1/descriptor-digest"] == digest == image.descriptor_digest
    assert annotations["trustd.io/stage1/flavor"] == flavor


def test_each_flavor_has_its_own_id() -> None:
    assert len(stage1_image_ids()) == len(FLAVORS)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_pod_start_event_carries_the_image_id(flavor: Flavor) -> None:
    event = _measure._stage1(_plan(flavor))
    image = stage1_image(flavor)
    assert event["image_id"] == image.image_id
    assert event["image"] == image.name
    assert event["descriptor_digest"] == image.descriptor_digest


def test_only_the_generated_bytes_are_admitted_as_shipped(tmp_path: Path) -> None:
    image = stage1_image("container")
    good = tmp_path / "good.aci"
    good.write_bytes(image.archive)
    admitted = admit_stage1(good, image)
    assert admitted.provenance.signers == () and not admitted.provenance.insecure
    assert "shipped" in admitted.provenance.trusted_via
    other = tmp_path / "other.aci"
    other.write_bytes(stage1_image("fly").archive)  # a valid ACI, but not this image
    with pytest.raises(LocalStateError, match="is not trustd's container stage1 image"):
        admit_stage1(other, image)

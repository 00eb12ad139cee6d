"""docker2aci's vectors: the synthetic image converts to the reference output; the two
malicious archives are refused at once and leave nothing behind."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests.conftest import snapshot
from trustd.shared.appc.aci import AciLimits, inspect_aci
from trustd.shared.docker.convert import convert
from trustd.shared.errors import RemoteLiedError, UserError
from trustd.shared.insecure import Insecure
from trustd.shared.store import ImageStore
from trustd.unprivileged.docker import DockerFetch, fetch_docker
from trustd.unprivileged.docker.fetch import _archive_image
from trustd.unprivileged.docker.reference import parse_docker_ref

VECTORS = Path(__file__).parents[2] / "vectors" / "docker2aci"
SYNTH = VECTORS / "synthetic"


def _convert(archive: Path, out: Path) -> None:
    ref = parse_docker_ref(f"docker-archive:{archive}")
    with archive.open("rb") as source, out.open("wb") as f:
        pulled = _archive_image(archive, source)
        convert(pulled.layers, pulled.config_bytes, pulled.origin, f, label=ref.url)


def _listing(aci: Path) -> set[tuple[str, str, int, int, str]]:
    with tarfile.open(aci) as tar:
        return {
            (m.name, "l" if m.issym() else "d" if m.isdir() else "-", m.mode, m.size, m.linkname)
            for m in tar
        }


def _expected_listing() -> set[tuple[str, str, int, int, str]]:
    out = set()
    kinds = {"l": "l", "d": "d", "-": "-"}
    for line in (SYNTH / "example-peer-1.0.expected.tar-listing.txt").read_text().splitlines():
        perms, _owner, size, _date, _time, name, *link = line.split()
        mode = sum(1 << (8 - i) for i, c in enumerate(perms[1:]) if c != "-")  # rwxr-xr-x -> 0o755
        target = link[1] if link else ""
        out.add((name, kinds[perms[0]], mode, 0 if perms[0] == "l" else int(size), target))
    return out


def test_synthetic_image_matches_docker2aci(tmp_path: Path) -> None:
    aci = tmp_path / "peer.aci"
    _convert(SYNTH / "peer-synth-v1.docker", aci)
    info = inspect_aci(aci, limits=AciLimits())
    got = json.loads(info.manifest_bytes)
    want = json.loads((SYNTH / "example-peer-1.0.expected.manifest.json").read_bytes())
    # deliberate: trustd writes appc 0.8.11 manifests
    assert got.pop("acVersion") == "0.8.11" and want.pop("acVersion") == "0.8.10"
    assert got == want
    listing = {e for e in _listing(aci) if e[0] != "manifest"}
    assert listing == {e for e in _expected_listing() if e[0] != "manifest"}


def test_synthetic_whiteout_is_applied_and_upper_content_wins(tmp_path: Path) -> None:
    aci = tmp_path / "peer.aci"
    _convert(SYNTH / "peer-synth-v1.docker", aci)
    with tarfile.open(aci) as tar:
        names = tar.getnames()
        motd = tar.extractfile("rootfs/etc/motd")
        assert motd is not None
        assert len(motd.read()) == 9  # the upper layer's version
    assert "rootfs/etc/gone" not in names and not any(".wh." in n for n in names)


@pytest.mark.parametrize(
    ("vector", "message"),
    [
        ("fixture-test-depsloop/fixture-test-depsloop.docker", "dependency loop detected"),
        ("fixture-test-invalidlayerid/fixture-test-invalidlayerid.docker", "invalid layer ID"),
    ],
)
def test_malicious_archives_are_refused_and_write_nothing(
    vector: str, message: str, tmp_path: Path
) -> None:
    store = ImageStore.open(tmp_path / "data", create=True)
    before = snapshot(tmp_path)
    with pytest.raises(RemoteLiedError, match=message):  # refused, not looped (no clock)
        fetch_docker(
            f"docker-archive:{VECTORS / 'tests' / vector}",
            DockerFetch(store=store, insecure=Insecure.IMAGE),
        )
    assert snapshot(tmp_path) == before
    assert store.images() == []
    assert not Path(
        "/etc/0356b1e5e5e3d24fb5ee802594ec3dbbce3f3bee7feaf9d99236bf5ddf95094a"
    ).exists()


def test_archive_fetch_stores_an_insecure_image_with_its_digest(tmp_path: Path) -> None:
    store = ImageStore.open(tmp_path / "data", create=True)
    record = fetch_docker(
        f"docker-archive:{SYNTH / 'peer-synth-v1.docker'}",
        DockerFetch(store=store, insecure=Insecure.IMAGE),
    )
    assert record.name == "example/peer" and record.label("version") == "1.0"
    assert record.provenance.insecure and record.provenance.signers == ()
    assert record.provenance.source_digest.startswith("sha256:")
    again = fetch_docker(
        f"docker-archive:{SYNTH / 'peer-synth-v1.docker'}",
        DockerFetch(store=store, insecure=Insecure.IMAGE),
    )
    assert again.key == record.key  # deterministic conversion: the same image ID


def test_unsigned_docker_images_need_the_opt_out(tmp_path: Path) -> None:
    store = ImageStore.open(tmp_path / "data", create=True)
    with pytest.raises(UserError) as err:
        fetch_docker(
            f"docker-archive:{SYNTH / 'peer-synth-v1.docker'}",
            DockerFetch(store=store, insecure=Insecure.NONE),
        )
    assert err.value.message == (
        "signature verification for docker images is not supported (try --insecure-options=image)"
    )
    assert store.images() == []

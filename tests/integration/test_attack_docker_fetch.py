"""A group member against the fetch side's self-accounted conversion (ADR 0026).

The fetch child admits the Docker conversion it just wrote from the account its writer kept
(sha512, size, entries, set-id files), not by reading the ACI back. ``cas/tmp`` and the blob
directories are the group's, so a member can swap the written ACI for one of their own after
it was accounted for (in the scratch window, or in the blob directory afterwards): the ID in
the index then names bytes that are not there. These attacks are made for real, as a member
of group rkt, and every root verb must refuse them with exit 254, changing nothing.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from tests.conftest import ConfigDirs
from tests.integration._attacker import member, snapshot
from tests.integration._registry import World, needs_registry_tools
from tests.integration.conftest import rkt

pytestmark = needs_registry_tools
INDEX = ("db",)


def _fetch(dirs: ConfigDirs, world: World) -> str:
    url = f"docker://{world.plain.host}/busybox:latest"
    fetched = rkt(dirs, "--insecure-options=image,http", "fetch", url, check=True)
    short = fetched.stdout.strip().splitlines()[-1]  # rkt prints sha512- and 32 hex digits
    assert short.startswith("sha512-") and len(short) == 39
    (full,) = (dirs.data / "cas/blob/sha512" / short[7:9]).glob(f"{short}*")
    return full.name


def _stored(dirs: ConfigDirs, image_id: str) -> Path:
    return dirs.data / "cas/blob/sha512" / image_id[7:9] / image_id


def _same_manifest_other_files(original: Path, out: Path) -> Path:
    """The stored conversion with its manifest byte for byte, and one file more: everything
    the index and the annotations say still holds, only the bytes differ."""
    with tarfile.open(original) as src, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        for m in src:
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
        evil = tarfile.TarInfo("rootfs/bin/evil")
        payload = b"#!/bin/sh\necho owned\n"
        evil.size, evil.mode = len(payload), 0o4755
        dst.addfile(evil, io.BytesIO(payload))
    out.chmod(0o644)
    return out


def test_a_conversion_swapped_after_it_was_accounted_for_is_refused_by_every_root_verb(
    shared_dirs: ConfigDirs, world: World, tmp_path: Path
) -> None:
    image_id = _fetch(shared_dirs, world)
    blob = _stored(shared_dirs, image_id)
    evil = _same_manifest_other_files(blob / "image.aci", shared_dirs.data.parent / "evil.aci")
    member("cp", str(evil), str(blob / "new.aci"))
    member("mv", "-f", str(blob / "new.aci"), str(blob / "image.aci"))
    before = snapshot(shared_dirs.data / "cas", skip=INDEX)
    tree = shared_dirs.data / "private/tree"

    ran = rkt(
        shared_dirs,
        "--insecure-options=image",
        "run",
        image_id,
        "--exec=/bin/evil",
    )
    assert ran.returncode == 254, ran.stdout + ran.stderr
    assert "not the requested" in ran.stderr
    assert "owned" not in ran.stdout

    rendered = rkt(
        shared_dirs,
        "--insecure-options=image",
        "image",
        "render",
        image_id,
        str(tmp_path / "render"),
    )
    assert rendered.returncode == 254, rendered.stderr
    assert not (tmp_path / "render" / "rootfs/bin/evil").exists()

    exported = rkt(shared_dirs, "image", "export", image_id, str(tmp_path / "out.aci"))
    assert exported.returncode == 254, exported.stderr
    assert "does not hash to its ID" in exported.stderr
    assert not (tmp_path / "out.aci").exists()

    # nothing rendered, nothing in the store changed (beyond the stage1 image a run stores)
    after = snapshot(shared_dirs.data / "cas", skip=INDEX)
    assert {k: v for k, v in after.items() if k in before} == before
    assert image_id not in (p.name for p in tree.iterdir())
    assert [n for n in os.listdir(tree) if n.startswith(".render-")] == []  # noqa: PTH208

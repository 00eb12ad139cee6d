"""``docker://`` and local Docker sources converted to ACIs, refused unsigned, and run by ``rkt``.

Multi-layer images (whiteouts, hard links), the unsigned-image refusal, ``rkt fetch`` + ``rkt run``
of a registry image, and ``oci:``/``docker-archive:`` sources. The registry and images are built
by ``tests.integration._registry``; transport and auth are in test_docker_registry.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ConfigDirs
from tests.integration._registry import (
    World,
    aci_names,
    job,
    needs_registry_tools,
    run,
)
from tests.integration.conftest import RKT
from trustd.shared.errors import UserError
from trustd.shared.insecure import Insecure
from trustd.shared.store import ImageStore
from trustd.unprivileged.docker import fetch_docker

pytestmark = needs_registry_tools


def test_multi_layer_whiteouts_and_hard_links(world: World, store: ImageStore) -> None:
    record = fetch_docker(f"docker://{world.plain.host}/busybox:multi", job(store))
    names = aci_names(store, record.key)
    assert "rootfs/etc/gone" not in names and not any(".wh." in n for n in names)
    assert not any(n.startswith("rootfs/var/cache") for n in names)
    links = {names["rootfs/bin/hardbox"].linkname, names["rootfs/bin/busybox"].linkname}
    assert links & {"rootfs/bin/busybox", "rootfs/bin/hardbox"}  # one is a hard link to the other


def test_unsigned_image_is_refused_with_rkts_message(world: World, shared_dirs: ConfigDirs) -> None:
    """(In dirs the unprivileged fetch process can reach: as root, it creates the index.)"""
    result = subprocess.run(
        [
            RKT,
            *shared_dirs.flags(),
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


def test_root_fetches_local_sources_under_a_private_directory(
    world: World, shared_dirs: ConfigDirs
) -> None:
    """As root, ``rkt fetch`` opens ``docker-archive:`` files and ``oci:`` directories before
    it drops to rkt-fetch, so a source under a 0700 directory (like /root) still loads."""
    if os.geteuid() != 0:
        pytest.skip("the privilege drop only happens for root (integration tier)")
    subprocess.run(["bash", "scripts/setup-groups.sh"], check=True)
    private = Path(tempfile.mkdtemp(prefix="trustd-private-", dir="/tmp"))
    try:
        private.chmod(0o700)
        archive = private / "saved.tar"
        run(
            "skopeo",
            "copy",
            "--quiet",
            f"oci:{world.layout}:base",
            f"docker-archive:{archive}:example/private:v1",
        )
        layout = private / "layout"
        shutil.copytree(world.layout, layout)
        flags = [RKT, *shared_dirs.flags(), "--insecure-options=image"]
        for source in (f"docker-archive:{archive}", f"oci:{layout}:multi"):
            fetched = subprocess.run(
                [*flags, "fetch", source], capture_output=True, text=True, check=False, timeout=60
            )
            assert fetched.returncode == 0, fetched.stderr
            assert fetched.stdout.strip().startswith("sha512-")
        listed = subprocess.run(
            [*flags, "image", "list"], capture_output=True, text=True, check=True, timeout=60
        )
        assert "example/private" in listed.stdout and "layout" in listed.stdout
    finally:
        shutil.rmtree(private, ignore_errors=True)

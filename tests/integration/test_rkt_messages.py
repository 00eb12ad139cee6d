"""rkt's messages where rkt's functional tests match them (issue #13): fetch of an unsigned
file, the file fetcher's diagnostic line, a flag that must follow an image."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests._busybox import busybox_aci
from tests.conftest import ConfigDirs
from tests.integration.conftest import RKT, require_root, rkt


def test_an_unsigned_file_is_refused_with_rkts_words(
    shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    require_root()
    aci = busybox_aci(tmp_path / "unsigned.aci", "example.com/unsigned")
    refused = rkt(shared_dirs, "fetch", str(aci))
    assert refused.returncode == 254
    assert "error opening signature file" in refused.stderr
    assert f"{aci}.asc: no such file or directory" in refused.stderr
    ran = rkt(shared_dirs, "run", str(aci), "--exec=/bin/true")
    assert ran.returncode == 254 and "error opening signature file" in ran.stderr


def test_debug_names_the_file_an_image_came_from(shared_dirs: ConfigDirs, tmp_path: Path) -> None:
    require_root()
    aci = busybox_aci(tmp_path / "bb.aci", "example.com/busybox")
    done = rkt(shared_dirs, "--debug", "--insecure-options=image", "fetch", str(aci), "--full")
    assert done.returncode == 0, done.stderr
    assert f"image: using image from file {aci.absolute()}" in done.stderr
    assert len(done.stdout.strip()) == len("sha512-") + 64  # --full after the image
    quiet = rkt(shared_dirs, "--insecure-options=image", "fetch", str(aci))
    assert "using image from file" not in quiet.stderr  # a diagnostic: --debug only
    assert len(quiet.stdout.strip()) == len("sha512-") + 32


def test_a_per_app_flag_before_any_image_is_rkts_error(shared_dirs: ConfigDirs) -> None:
    require_root()
    for flag in ("--exec=/bin/sh", "--memory=64M", "--supplementary-gids=1"):
        refused = rkt(shared_dirs, "run", flag, "example.com/x")
        assert refused.returncode == 254
        assert f"{flag.split('=')[0]} must follow an image" in refused.stderr
    refused = rkt(shared_dirs, "fetch", "--signature", "x.asc", "example.com/x")
    assert refused.returncode == 254
    assert "--signature must follow an image" in refused.stderr


def _to_closed_pipe(dirs: ConfigDirs, *args: str) -> subprocess.CompletedProcess[str]:
    """Run rkt with stdout a pipe whose reader is already gone (``| head -0``, no race)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [RKT, *dirs.flags(), *args],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            timeout=120,
        )
    finally:
        os.close(write)


def test_a_reader_that_went_away_gets_no_traceback(shared_dirs: ConfigDirs, image: str) -> None:
    for _ in range(2):
        rkt(shared_dirs, "run", image, "--exec=/bin/true", check=True)
    for args in (("list",), ("image", "list"), ("status", "--help"), ("gc", "--grace-period=0s")):
        done = _to_closed_pipe(shared_dirs, *args)
        assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, args
        assert "Exception ignored" not in done.stderr, args
        assert done.returncode in (0, 254), (args, done.returncode)


def _labelled_aci(path: Path, labels: list[dict[str, str]]) -> Path:
    import io  # noqa: PLC0415
    import json  # noqa: PLC0415
    import tarfile  # noqa: PLC0415

    from tests._aci import manifest  # noqa: PLC0415

    doc = {**manifest("example.com/osarch"), "labels": [{"name": "version", "value": "1"}, *labels]}
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (("manifest", json.dumps(doc).encode()), ("rootfs", None)):
            info = tarfile.TarInfo(name)
            info.mode = 0o644 if data else 0o755
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def test_an_image_not_for_linux_is_refused_at_run_with_rkts_words(
    shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    """rkt's rkt_os_arch_test: fetch stores it; run (from the file or the store) refuses it."""
    require_root()
    cases = [
        ([{"name": "arch", "value": "amd64"}], "missing os label in the image manifest"),
        ([{"name": "os", "value": "linux"}], "missing arch label in the image manifest"),
        (
            [{"name": "os", "value": "freebsd"}, {"name": "arch", "value": "amd64"}],
            'bad os "freebsd" (must be one of: [linux])',
        ),
    ]
    for i, (labels, says) in enumerate(cases):
        aci = _labelled_aci(tmp_path / f"img{i}.aci", labels)
        fetched = rkt(shared_dirs, "--insecure-options=image", "fetch", "--full", str(aci))
        assert fetched.returncode == 0, fetched.stderr
        for image in (str(aci), fetched.stdout.strip()):
            ran = rkt(shared_dirs, "--insecure-options=image", "run", image, "--exec=/bin/true")
            assert ran.returncode == 254, ran.stderr
            assert says in ran.stderr, ran.stderr
    bad_arch = _labelled_aci(
        tmp_path / "arch.aci",
        [{"name": "os", "value": "linux"}, {"name": "arch", "value": "armv5l"}],
    )
    refused = rkt(shared_dirs, "--insecure-options=image", "fetch", str(bad_arch))
    assert refused.returncode == 254
    assert 'bad arch "armv5l" for linux (must be one of: [amd64 i386 aarch64' in refused.stderr

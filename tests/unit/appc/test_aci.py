"""ACI inspection: good archives in every compression are accepted and described.

Hostile archives are in test_aci_hostile.py, property tests in test_aci_properties.py; the
builders they share are in _archives.py.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from tests.unit.appc._archives import (
    COMPRESS,
    LIMITS,
    MANIFEST,
    VECTORS,
    E,
    d,
    good,
    hard,
    inspect,
    sym,
    tar_bytes,
)
from trustd.shared.appc.aci import Compression, image_id_short, inspect_aci
from trustd.shared.errors import LocalStateError, UserError

# -- accepted -------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", list(Compression))
def test_good_archive_in_each_compression(compression: Compression) -> None:
    plain = tar_bytes(good(sym("rootfs/bin/sh", "app"), hard("rootfs/bin/app2", "rootfs/bin/app")))
    info = inspect_aci(io.BytesIO(COMPRESS[compression](plain)), limits=LIMITS)
    assert info.compression is compression
    assert info.image_id == "sha512-" + hashlib.sha512(plain).hexdigest()
    assert info.uncompressed_size == len(plain)
    assert info.entry_count == 6
    assert info.manifest_bytes == MANIFEST
    assert str(info.manifest.name) == "example.com/app"
    assert not info.has_setuid


@pytest.mark.parametrize(
    "aci", sorted((VECTORS / "rkt/trust-scenario").glob("*.aci")), ids=lambda p: p.name
)
def test_rkt_trust_scenario_acis(aci: Path) -> None:
    info = inspect_aci(aci, limits=LIMITS)
    expected = hashlib.sha512(gzip.decompress(aci.read_bytes())).hexdigest()
    assert info.image_id == f"sha512-{expected}"
    assert info.compression is Compression.GZIP
    assert str(info.manifest.name) == aci.name.removesuffix(".aci").replace("_", "/")


def test_image_id_covers_end_padding_and_short_form() -> None:
    plain = tar_bytes(good()) + b"\0" * 10240  # extra zero records after the end blocks
    info = inspect(COMPRESS[Compression.GZIP](plain))
    assert info.image_id == "sha512-" + hashlib.sha512(plain).hexdigest()
    short = image_id_short(info.image_id)
    assert short == info.image_id[: len("sha512-") + 32]
    with pytest.raises(UserError):
        image_id_short("sha256-abc")


def test_dot_slash_prefixes_and_archive_root_are_tolerated() -> None:
    entries = [d("./"), E("./manifest", data=MANIFEST), d("./rootfs/"), E("./rootfs/a", data=b"1")]
    assert inspect(tar_bytes(entries)).entry_count == 4


def test_absolute_symlink_targets_stay_in_the_container() -> None:
    entries = good(sym("rootfs/dev/stdin", "/proc/self/fd/0"), sym("rootfs/lib64", "/usr/../lib"))
    assert inspect(tar_bytes(entries)).entry_count == 6


def test_setuid_files_are_reported_not_refused() -> None:
    info = inspect(tar_bytes(good(E("rootfs/bin/su", data=b"x", mode=0o4755), d("rootfs/tmp"))))
    assert info.has_setuid
    assert info.setuid_paths == ("rootfs/bin/su",)


def test_devices_only_when_allowed() -> None:
    data = tar_bytes(good(E("rootfs/null", tarfile.CHRTYPE), E("rootfs/fifo", tarfile.FIFOTYPE)))
    assert inspect(data, allow_devices=True).entry_count == 6


def test_path_input_and_errors_outside_the_archive(tmp_path: Path) -> None:
    path = tmp_path / "a.aci"
    path.write_bytes(gzip.compress(tar_bytes(good())))
    assert inspect_aci(path, limits=LIMITS).entry_count == 4
    assert inspect_aci(str(path), limits=LIMITS).entry_count == 4
    with pytest.raises(UserError, match="cannot open"):
        inspect_aci(tmp_path / "missing.aci", limits=LIMITS)

    class Failing(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b: object) -> int:
            raise OSError("connection reset")

    with pytest.raises(LocalStateError, match="connection reset"):
        inspect_aci(io.BufferedReader(Failing()), limits=LIMITS)

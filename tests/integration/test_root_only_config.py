"""Root's fetch with root-only 0700 ``--dir``, ``--local-config`` and ``--system-config``.

rkt's functional tests make each of those directories with Go's ``ioutil.TempDir`` (0700,
root's) and run rkt as root. trustd's fetch child (rkt-fetch, group rkt) cannot read them,
so root reads the trusted keys before the drop (``Keystore.preload``), as it reads auth.d;
the child judges with them in memory and still cannot write root's config.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._aci import build_aci
from tests._policy import install_policy
from tests.conftest import ConfigDirs, Keys
from tests.integration._attacker import snapshot
from tests.integration.conftest import RKT, require_root

NAME = "example.com/rootonly"


def rkt(dirs: ConfigDirs, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RKT, *dirs.flags(), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def root_only() -> Iterator[ConfigDirs]:
    """Three ``mkdtemp`` directories in /tmp, 0700 root, as rkt's test context makes them."""
    require_root()
    subprocess.run(["bash", "scripts/setup-groups.sh"], check=True)
    made = [Path(tempfile.mkdtemp(prefix=p, dir="/tmp")) for p in ("sys-", "local-", "data-")]
    dirs = ConfigDirs(*made)
    install_policy(dirs.system)
    for d in made:
        d.chmod(0o700)
    yield dirs
    for d in made:
        shutil.rmtree(d, ignore_errors=True)


def _trust(dirs: ConfigDirs, keys: Keys, fpr: str, tmp_path: Path) -> None:
    key = tmp_path / f"{fpr}.asc"
    key.write_bytes(keys.public(fpr))
    result = rkt(dirs, "trust", "--prefix", NAME, "--skip-fingerprint-review", str(key))
    assert result.returncode == 0, result.stderr


def test_fetch_works_with_root_only_dirs(root_only: ConfigDirs, keys: Keys, tmp_path: Path) -> None:
    _trust(root_only, keys, keys.good, tmp_path)
    aci = build_aci(tmp_path / "img.aci", NAME)
    keys.gpg.sign(keys.good, aci, tmp_path / "img.aci.asc")
    config_before = {d: snapshot(d) for d in (root_only.system, root_only.local)}
    result = rkt(root_only, "--debug", "fetch", "--full", str(aci))
    assert result.returncode == 0, result.stderr
    assert "fetching as rkt-fetch" in result.stderr
    assert "signature verified" in result.stderr
    key = result.stdout.strip()
    assert next((root_only.data / "cas/blob/sha512").glob(f"*/{key}"))
    for d in (root_only.system, root_only.local):
        mode = d.stat()
        assert (stat.S_IMODE(mode.st_mode), mode.st_uid, mode.st_gid) == (0o700, 0, 0)
        assert snapshot(d) == config_before[d]  # the child wrote nothing in root's config
    listed = rkt(root_only, "image", "list")
    assert listed.returncode == 0, listed.stderr
    assert NAME in listed.stdout


def test_untrusted_signer_is_still_refused(
    root_only: ConfigDirs, keys: Keys, tmp_path: Path
) -> None:
    _trust(root_only, keys, keys.good, tmp_path)
    aci = build_aci(tmp_path / "img.aci", NAME)
    keys.gpg.sign(keys.rsa, aci, tmp_path / "img.aci.asc")
    result = rkt(root_only, "fetch", str(aci))
    assert result.returncode == 254
    assert "which is not trusted for prefix" in result.stderr
    assert not list((root_only.data / "cas/blob/sha512").glob("*/*"))


def test_data_dir_below_a_root_only_parent_is_refused_clearly(keys: Keys, tmp_path: Path) -> None:
    """A --dir the fetch identity cannot reach at all: the reason and the fix, 254."""
    require_root()
    parent = Path(tempfile.mkdtemp(prefix="rootonly-parent-", dir="/tmp"))  # 0700
    try:
        dirs = ConfigDirs(parent / "sys", parent / "local", parent / "data")
        for d in (dirs.system, dirs.local):
            d.mkdir(mode=0o700)
        install_policy(dirs.system)
        _trust(dirs, keys, keys.good, tmp_path)
        aci = build_aci(tmp_path / "img.aci", NAME)
        keys.gpg.sign(keys.good, aci, tmp_path / "img.aci.asc")
        result = rkt(dirs, "fetch", str(aci))
        assert result.returncode == 254
        assert f"cannot reach the data directory {dirs.data}" in result.stderr
        assert f"{parent} is not searchable by it" in result.stderr
        assert "chmod g+x" in result.stderr
        assert stat.S_IMODE(parent.stat().st_mode) == 0o700  # nothing loosened
    finally:
        shutil.rmtree(parent, ignore_errors=True)

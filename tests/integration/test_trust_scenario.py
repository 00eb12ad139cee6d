"""rkt's TestTrust scenario, through the real ``rkt`` executable, against rkt's own vectors.

rkt's key1/key2 carry only SHA-1 self-signatures, which trustd refuses (ADR 0001). The
scenario first shows that refusal, then re-issues key1's and key2's self-signatures with
SHA-256 in a throw-away gpg home (dated 2017, after the keys were made and before the
vectors were signed, so the original signatures stay valid) and plays rkt's steps with
``rkt trust verify`` standing in for ``rkt run`` until the executor exists.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests._gpg import GpgHome
from tests.conftest import ConfigDirs, snapshot

VECTORS = Path(__file__).parents[1] / "vectors/rkt"
KEY1 = "36B287ADD1095DB1AFD9CBF125D5D9FAD9DCEF41"
KEY2 = "84AA0BF58E75FD757B506FE4379E3D70585091E3"
RKT = str(Path(sys.executable).with_name("rkt"))


def rkt(dirs: ConfigDirs, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RKT, *dirs.flags(), *args], capture_output=True, text=True, check=False, timeout=60
    )


@pytest.fixture(scope="module")
def rebound(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    gpg = GpgHome(tmp_path_factory.mktemp("rkt-gnupg"))
    gpg.run("--import", str(VECTORS / "tests/secring.gpg"))
    out: dict[str, Path] = {}
    for name, fpr in (("key1", KEY1), ("key2", KEY2)):
        gpg.run("--quick-set-expire", fpr, "0", faked_time="20170101T000000")
        out[name] = tmp_path_factory.mktemp(name) / f"{name}.asc"
        out[name].write_bytes(gpg.export(fpr))
    return out


def aci(
    dirs: ConfigDirs, tmp: Path, name: str, sig: str = ".aci.asc"
) -> subprocess.CompletedProcess[str]:
    src = VECTORS / "trust-scenario" / f"{name}.aci"
    image = tmp / src.name
    if not image.exists():
        shutil.copy(src, image)
    return rkt(dirs, "trust", "verify", str(image), f"--signature={src}{sig.removeprefix('.aci')}")


def trust(dirs: ConfigDirs, key: Path, *scope: str) -> None:
    result = rkt(dirs, "trust", *scope, "--skip-fingerprint-review", str(key))
    assert result.returncode == 0, result.stderr


def test_rkt_original_test_key_is_refused_as_weak(config_dirs: ConfigDirs) -> None:
    result = rkt(
        config_dirs,
        "trust",
        "--prefix",
        "rkt-prefix.com/my-app",
        "--skip-fingerprint-review",
        str(VECTORS / "tests/key1.gpg"),
    )
    assert result.returncode == 254
    assert "too weak" in result.stderr and "SHA-1" in result.stderr
    assert snapshot(config_dirs.local) == {}


def test_trust_scenario(config_dirs: ConfigDirs, rebound: dict[str, Path], tmp_path: Path) -> None:
    a, b = "rkt-prefix.com_my-app", "rkt-alternative.com_my-app"
    missing = rkt(
        config_dirs,
        "trust",
        "verify",
        str(VECTORS / "trust-scenario" / f"{a}.aci"),
        f"--signature={tmp_path / 'nope.asc'}",
    )
    assert missing.returncode == 254 and "no such file" in missing.stderr

    unknown = aci(config_dirs, tmp_path, a)
    assert unknown.returncode == 254
    assert 'which is not trusted for prefix "rkt-prefix.com/my-app"' in unknown.stderr
    assert 'run: rkt trust --prefix "rkt-prefix.com/my-app"' in unknown.stderr

    trust(config_dirs, rebound["key1"], "--prefix", "wrong-prefix.com/my-app")
    assert aci(config_dirs, tmp_path, a).returncode == 254
    trust(config_dirs, rebound["key2"], "--prefix", "rkt-prefix.com/my-app")
    assert aci(config_dirs, tmp_path, a).returncode == 254
    assert aci(config_dirs, tmp_path, a, ".aci.asc-key2").returncode == 0

    trust(config_dirs, rebound["key1"], "--prefix", "rkt-prefix.com/my-app")
    ok = aci(config_dirs, tmp_path, a)
    assert ok.returncode == 0, ok.stderr
    assert 'signature verified: image "rkt-prefix.com/my-app"' in ok.stdout
    assert aci(config_dirs, tmp_path, b).returncode == 254

    trust(config_dirs, rebound["key1"], "--prefix", "foo.com")
    trust(config_dirs, rebound["key1"], "--prefix", "example.com/my-app")
    assert aci(config_dirs, tmp_path, a).returncode == 0
    assert aci(config_dirs, tmp_path, b).returncode == 254

    trust(config_dirs, rebound["key1"], "--root")
    assert aci(config_dirs, tmp_path, a).returncode == 0
    assert aci(config_dirs, tmp_path, b).returncode == 0


def test_tampered_image_is_refused(
    config_dirs: ConfigDirs, rebound: dict[str, Path], tmp_path: Path
) -> None:
    trust(config_dirs, rebound["key1"], "--root")
    src = VECTORS / "trust-scenario/rkt-prefix.com_my-app.aci"
    bad = tmp_path / "tampered.aci"
    data = bytearray(src.read_bytes())
    data[-30] ^= 0x01
    bad.write_bytes(bytes(data))
    result = rkt(config_dirs, "trust", "verify", str(bad), f"--signature={src}.asc")
    assert result.returncode == 254
    assert "trust:" in result.stderr or "verify:" in result.stderr

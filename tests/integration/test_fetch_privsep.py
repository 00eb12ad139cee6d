"""Privilege separation, observed: who wrote the store, and a real user in group rkt.

When root runs ``rkt fetch``, the archive parsing and store writes happen in a child that
dropped to ``rkt-fetch``:group ``rkt`` (docs/adr/0005), so every file of the stored image is
owned by that account. A root-only source file still works: root opens it first and the
child reads the open descriptor.
"""

from __future__ import annotations

import grp
import pwd
import subprocess
from pathlib import Path

import pytest

from tests._aci import build_aci
from tests.conftest import ConfigDirs, Keys
from tests.integration.conftest import RKT, ensure_user, require_root

NAME = "example.com/privsep"
TEST_USER = "trustd-it-user"


def rkt(dirs: ConfigDirs, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["setpriv", f"--reuid={user}", "--regid=rkt", "--init-groups", "--"] if user else []
    return subprocess.run(
        [*prefix, RKT, *dirs.flags(), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture
def signed(shared_dirs: ConfigDirs, keys: Keys, tmp_path: Path) -> Path:
    require_root()
    subprocess.run(["bash", "scripts/setup-groups.sh"], check=True)
    private = tmp_path / "root-only"
    private.mkdir(mode=0o700)
    aci = build_aci(private / "img.aci", NAME)
    keys.gpg.sign(keys.good, aci, private / "img.aci.asc")
    aci.chmod(0o600)
    key = tmp_path / "key.asc"
    key.write_bytes(keys.public(keys.good))
    assert (
        rkt(
            shared_dirs, "trust", "--prefix", "example.com", "--skip-fingerprint-review", str(key)
        ).returncode
        == 0
    )
    return aci


def test_root_fetch_runs_unprivileged(shared_dirs: ConfigDirs, signed: Path) -> None:
    result = rkt(shared_dirs, "--debug", "fetch", "--full", str(signed))
    assert result.returncode == 0, result.stderr
    assert "fetching as rkt-fetch" in result.stderr
    key = result.stdout.strip()
    blob = next((shared_dirs.data / "cas/blob/sha512").glob(f"*/{key}"))
    fetch_uid = pwd.getpwnam("rkt-fetch").pw_uid
    rkt_gid = grp.getgrnam("rkt").gr_gid
    for f in [blob, *blob.iterdir()]:
        assert f.stat().st_uid == fetch_uid, f
        assert f.stat().st_gid == rkt_gid, f
    cas = (shared_dirs.data / "cas").stat()
    assert cas.st_gid == rkt_gid and cas.st_mode & 0o7777 == 0o2770


def test_refusal_in_the_child_crosses_back_with_254(
    shared_dirs: ConfigDirs, signed: Path, keys: Keys, tmp_path: Path
) -> None:
    other = build_aci(tmp_path / "other.aci", NAME, files={"bin/hello": b"swapped"})
    result = rkt(shared_dirs, "fetch", str(other), "--signature", f"{signed}.asc")
    assert result.returncode == 254
    assert "fetch: the signature by key" in result.stderr and "does not match" in result.stderr
    assert "  the data or the signature was altered" in result.stderr
    assert not list((shared_dirs.data / "cas/blob/sha512").glob("*/*"))


def test_member_of_group_rkt_fetches_without_root(
    shared_dirs: ConfigDirs, signed: Path, tmp_path: Path
) -> None:
    ensure_user(TEST_USER)
    readable = Path(f"{shared_dirs.data}-src")
    readable.mkdir(mode=0o755)
    (readable / "img.aci").write_bytes(signed.read_bytes())
    (readable / "img.aci.asc").write_bytes(Path(f"{signed}.asc").read_bytes())
    # root prepares the store once (rkt's setup-data-dir.sh), then the user fetches into it
    assert rkt(shared_dirs, "image", "gc").returncode in (0, 254)
    assert rkt(shared_dirs, "fetch", str(readable / "img.aci")).returncode == 0
    as_user = rkt(shared_dirs, "fetch", str(readable / "img.aci"), user=TEST_USER)
    assert as_user.returncode == 0, as_user.stderr
    listed = rkt(shared_dirs, "image", "list", "--no-legend", user=TEST_USER)
    assert listed.returncode == 0 and NAME in listed.stdout
    refused = rkt(
        shared_dirs,
        "trust",
        "--prefix",
        "x.example",
        "--skip-fingerprint-review",
        str(tmp_path / "key.asc"),
        user=TEST_USER,
    )
    assert refused.returncode == 254

"""rkt's signer end to end: a key made by Go's openpgp.NewEntity is trusted with
``rkt trust``, and an image signed with ``openpgp.ArmoredDetachSign`` is fetched by root (in the
unprivileged child). Both carry the RSA MPIs Go writes too long (tests/vectors/
go-openpgp-rsa-mpi-leading-zero/), which Sequoia alone refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pysequoia

from tests._aci import build_aci
from tests._gosigner import GoSigner
from tests.conftest import ConfigDirs
from tests.integration.conftest import require_root, rkt

NAME = "example.com/gosigned"


def _refused_by_sequoia(signature: bytes) -> bool:
    try:
        pysequoia.Sig.from_bytes(signature)
    except RuntimeError:
        return True
    return False


def test_a_go_signed_image_from_a_go_key_is_fetched(
    shared_dirs: ConfigDirs, gosigner: GoSigner, tmp_path: Path
) -> None:
    require_root()
    subprocess.run(["bash", "scripts/setup-groups.sh"], check=True)
    key = gosigner.generate("Go Publisher", 2048)
    trusted = rkt(shared_dirs, "trust", "--prefix", NAME, "--skip-fingerprint-review", str(key))
    assert trusted.returncode == 0, trusted.stderr
    assert "Added key for prefix" in trusted.stdout
    for i in range(64):  # about one Go signature in two has a leading zero octet
        aci = build_aci(tmp_path / f"img{i}.aci", NAME, files={"rootfs/n": str(i).encode()})
        signature = gosigner.sign(key, aci.read_bytes())
        if _refused_by_sequoia(signature):
            break
    else:
        raise AssertionError("64 Go signatures in a row had canonical MPIs")
    asc = tmp_path / "img.aci.asc"
    asc.write_bytes(signature)
    fetched = rkt(shared_dirs, "--debug", "fetch", str(aci), "--signature", str(asc))
    assert fetched.returncode == 0, fetched.stderr
    assert "signature verified" in fetched.stderr
    assert fetched.stdout.startswith("sha512-")
    tampered = build_aci(tmp_path / "other.aci", NAME, files={"rootfs/n": b"other"})
    refused = rkt(shared_dirs, "fetch", str(tampered), "--signature", str(asc))
    assert refused.returncode == 254
    assert "does not match" in refused.stderr

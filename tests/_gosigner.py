"""rkt's signer, built here: Go's ``x/crypto/openpgp`` (``tests/gosigner/main.go``).

Built offline with Debian's ``golang-go`` and ``golang-golang-x-crypto-dev`` (GOPATH mode
over ``/usr/share/gocode``); both are in the Makefile's APT_PACKAGES, so in CI nothing skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SOURCE = Path(__file__).parent / "gosigner" / "main.go"
DEBIAN_GOCODE = Path("/usr/share/gocode")


class GoSigner:
    def __init__(self, binary: Path, work: Path) -> None:
        self.binary = binary
        self.work = work

    def _run(self, *args: str) -> bytes:
        proc = subprocess.run([str(self.binary), *args], capture_output=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"gosigner {' '.join(args)}: {proc.stderr.decode()}")
        return proc.stdout

    def generate(self, name: str, bits: int = 2048) -> Path:
        """An armored secret key made by openpgp.NewEntity."""
        path = self.work / f"{name}.sec.asc"
        path.write_bytes(self._run("gen", name, str(bits)))
        return path

    def sign(self, keyring: Path, data: bytes, hash_name: str = "sha256") -> bytes:
        """openpgp.ArmoredDetachSign over ``data`` with the first key of ``keyring``."""
        message = self.work / "message"
        message.write_bytes(data)
        return self._run("sign", str(keyring), str(message), hash_name)


def build(work: Path) -> GoSigner:
    go = shutil.which("go")
    crypto = DEBIAN_GOCODE / "src/golang.org/x/crypto/openpgp"
    if go is None or not crypto.is_dir():
        pytest.skip("needs golang-go and golang-golang-x-crypto-dev (make setup installs them)")
    src = work / "gopath/src/gosigner"
    src.mkdir(parents=True)
    shutil.copy(SOURCE, src / "main.go")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work),
        "GOPATH": f"{work / 'gopath'}:{DEBIAN_GOCODE}",
        "GO111MODULE": "off",
        "GOFLAGS": "",
        "GOPROXY": "off",
        "GOCACHE": str(work / "gocache"),
        "CGO_ENABLED": "0",
    }
    binary = work / "gosigner"
    subprocess.run(
        [go, "build", "-o", str(binary), "."], cwd=src, env=env, check=True, capture_output=True
    )
    return GoSigner(binary, work)

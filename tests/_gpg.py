"""Real GnuPG, driven in a throw-away home: the keys and signatures trustd must judge.

Every key and signature in the trust tests is made here by ``gpg`` itself (CONVENTIONS 13),
including the awkward ones: revoked keys and subkeys, expired keys, SHA-1 signatures and
RSA-1024 keys.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

GPG = shutil.which("gpg") or "gpg"


class GpgHome:
    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(mode=0o700, parents=True, exist_ok=True)

    def run(self, *args: str, stdin: bytes | None = None, faked_time: str | None = None) -> str:
        cmd = [
            GPG,
            "--homedir",
            str(self.home),
            "--batch",
            "--quiet",
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ]
        if faked_time:
            cmd += ["--faked-system-time", f"{faked_time}!"]
        proc = subprocess.run(
            [*cmd, *args],
            input=stdin,
            capture_output=True,
            check=False,
            env={**os.environ, "LC_ALL": "C"},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"gpg {' '.join(args)} failed: {proc.stderr.decode()}")
        return proc.stdout.decode()

    def fingerprint(self, uid: str) -> str:
        out = self.run("--with-colons", "--list-keys", uid)
        return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr"))

    def subkey_fingerprints(self, uid: str) -> list[str]:
        out = self.run("--with-colons", "--list-keys", uid).splitlines()
        return [out[i + 1].split(":")[9] for i, line in enumerate(out) if line.startswith("sub")]

    def generate(
        self,
        uid: str,
        algo: str = "ed25519",
        usage: str = "sign",
        expire: str = "1y",
        faked_time: str | None = None,
    ) -> str:
        self.run("--quick-gen-key", uid, algo, usage, expire, faked_time=faked_time)
        return self.fingerprint(uid)

    def add_signing_subkey(self, fpr: str, algo: str = "ed25519", expire: str = "1y") -> str:
        self.run("--quick-add-key", fpr, algo, "sign", expire)
        return self.subkey_fingerprints(fpr)[-1]

    def export(self, fpr: str, *, armor: bool = True) -> bytes:
        args = ["--armor"] if armor else []
        return subprocess.run(
            [GPG, "--homedir", str(self.home), "--batch", *args, "--export", fpr],
            capture_output=True,
            check=True,
        ).stdout

    def sign(
        self,
        signer: str,
        data: Path,
        out: Path,
        *,
        digest: str | None = None,
        armor: bool = True,
        faked_time: str | None = None,
    ) -> Path:
        args = ["--local-user", signer, "--output", str(out)]
        if digest:
            args += ["--digest-algo", digest]
        if armor:
            args.append("--armor")
        self.run(*args, "--detach-sign", str(data), faked_time=faked_time)
        return out

    def revoke(self, fpr: str) -> None:
        """Import the revocation certificate gpg made at key generation."""
        rev = (self.home / "openpgp-revocs.d" / f"{fpr.upper()}.rev").read_text()
        self.run("--import", stdin=rev.replace(":-----BEGIN", "-----BEGIN").encode())

    def revoke_subkey(self, fpr: str, index: int = 1) -> None:
        script = f"key {index}\nrevkey\ny\n0\n\ny\nsave\n".encode()
        self.run("--command-fd", "0", "--edit-key", fpr, stdin=script)

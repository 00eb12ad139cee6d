"""Export the AK, quote with a nonce, verify the bundle: the remote verifier's steps via the CLI."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import ConfigDirs
from tests.integration.conftest import rkt


@dataclass(frozen=True)
class Quote:
    """A quote bundle, the AK that signed it and the nonce it answers."""

    bundle: Path
    ak: Path
    nonce: str

    def verify(
        self, dirs: ConfigDirs, *extra: str, nonce: str | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """``rkt attest verify BUNDLE --ak AK --nonce NONCE [extra]`` (another nonce if given)."""
        given = self.nonce if nonce is None else nonce
        return rkt(
            dirs,
            "attest",
            "verify",
            str(self.bundle),
            "--ak",
            str(self.ak),
            "--nonce",
            given,
            *extra,
            check=check,
        )

    def report(self, dirs: ConfigDirs) -> dict[str, Any]:
        """The ``--format=json`` report of a verification that must succeed."""
        report: dict[str, Any] = json.loads(self.verify(dirs, "--format=json", check=True).stdout)
        return report


def attest_quote(dirs: ConfigDirs, out: Path, nonce: str) -> Quote:
    """``rkt attest ak`` and ``rkt attest quote --nonce`` into ``out/ak.pem``, ``out/bundle``."""
    bundle, ak = out / "bundle", out / "ak.pem"
    rkt(dirs, "attest", "ak", "--out", str(ak), check=True)
    rkt(dirs, "attest", "quote", "--nonce", nonce, "--out", str(bundle), check=True)
    return Quote(bundle, ak, nonce)

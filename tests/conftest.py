"""Fixtures shared by every tier: real gpg keys (made once per session) and keystore dirs."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests._gosigner import GoSigner
from tests._gosigner import build as build_gosigner
from tests._gpg import GpgHome
from tests._https import LOCAL_NAMES, LocalServer, trust_ca
from tests._policy import install_policy


@dataclass(frozen=True)
class Keys:
    """Fingerprints of gpg-made keys, one per situation the verifier must judge."""

    gpg: GpgHome
    good: str  # ed25519, signs with the primary key
    rsa: str  # rsa2048 primary
    weak: str  # rsa1024
    with_sub: str  # certify-only primary + signing subkey
    sub: str  # that signing subkey
    revoked: str
    revoked_sub_primary: str
    expired: str  # created 2020-01-01, expired 2020-01-02
    message: bytes
    sigs: dict[str, bytes]  # signatures over ``message``, made before any revocation

    def public(self, fpr: str) -> bytes:
        return self.gpg.export(fpr)


@pytest.fixture(scope="session")
def gosigner(tmp_path_factory: pytest.TempPathFactory) -> GoSigner:
    """rkt's signer (Go x/crypto/openpgp), built once per session."""
    return build_gosigner(tmp_path_factory.mktemp("gosigner"))


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    gpg = GpgHome(tmp_path_factory.mktemp("gnupg"))
    good = gpg.generate("Good Signer <good@example.com>")
    rsa = gpg.generate("RSA Signer <rsa@example.com>", algo="rsa2048")
    weak = gpg.generate("Weak Signer <weak@example.com>", algo="rsa1024")
    with_sub = gpg.generate("Sub Signer <sub@example.com>", usage="cert", expire="never")
    sub = gpg.add_signing_subkey(with_sub)
    revoked = gpg.generate("Revoked Signer <revoked@example.com>")
    revoked_sub_primary = gpg.generate(
        "Revoked Sub <revsub@example.com>", usage="cert", expire="never"
    )
    gpg.add_signing_subkey(revoked_sub_primary)
    expired = gpg.generate(
        "Expired Signer <expired@example.com>", expire="1d", faked_time="20200101T000000"
    )
    work = tmp_path_factory.mktemp("signed")
    msg = work / "message"
    msg.write_bytes(b"trustd test message\n")
    plan = {
        "good": (good, {}),
        "good-binary": (good, {"armor": False}),
        "rsa": (rsa, {}),
        "sha1": (rsa, {"digest": "SHA1"}),
        "weak": (weak, {}),
        "sub": (with_sub, {}),
        "revoked": (revoked, {}),
        "revoked-sub": (revoked_sub_primary, {}),
        "expired": (expired, {"faked_time": "20200101T010000"}),
    }
    sigs = {
        name: gpg.sign(fpr, msg, work / f"{name}.sig", **opts).read_bytes()  # type: ignore[arg-type]
        for name, (fpr, opts) in plan.items()
    }
    gpg.revoke(revoked)
    gpg.revoke_subkey(revoked_sub_primary)
    return Keys(
        gpg,
        good,
        rsa,
        weak,
        with_sub,
        sub,
        revoked,
        revoked_sub_primary,
        expired,
        msg.read_bytes(),
        sigs,
    )


@dataclass(frozen=True)
class ConfigDirs:
    system: Path
    local: Path
    data: Path

    def flags(self) -> list[str]:
        return [
            f"--system-config={self.system}",
            f"--local-config={self.local}",
            f"--dir={self.data}",
        ]


@pytest.fixture
def config_dirs(tmp_path: Path) -> Iterator[ConfigDirs]:
    """Config and data dirs; as root, in a directory group rkt may traverse (pytest's
    tmp_path is root-only), since root reads the store index only in an unprivileged child
    (trustd.cli._store)."""
    if os.geteuid() != 0:
        base = tmp_path
    else:
        base = Path(tempfile.mkdtemp(prefix="trustd-unit-", dir="/tmp"))
        base.chmod(0o755)
    dirs = ConfigDirs(base / "usr-lib-rkt", base / "etc-rkt", base / "var-lib-rkt")
    for d in (dirs.system, dirs.local, dirs.data):
        d.mkdir()
    install_policy(dirs.system)
    yield dirs
    if base != tmp_path:
        shutil.rmtree(base, ignore_errors=True)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its content: 'nothing changed' made checkable."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="session")
def ca() -> Any:
    """A throw-away trustme CA for the session's HTTPS servers."""
    return trustme.CA()


@pytest.fixture
def trusted(ca: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """SSL_CERT_FILE points at the trustme CA for the duration of the test."""
    return trust_ca(monkeypatch, ca, tmp_path)


@pytest.fixture
def https_server(ca: Any, trusted: Path) -> Iterator[LocalServer]:
    """A real HTTPS server on 127.0.0.1 with a certificate the test trusts."""
    with LocalServer(tls=ca.issue_cert(*LOCAL_NAMES)) as srv:
        yield srv


PROXY_VARIABLES = tuple(
    v
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    for v in (name, name.upper())
)


@pytest.fixture(autouse=True)
def _no_proxy_from_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """trustd honours the proxy variables (issue #15): a developer's own proxy must not
    reroute the tests' servers on 127.0.0.1. Tests about proxies set them themselves."""
    for variable in PROXY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)

"""Simple-signing refusals, each naming its reason and fix, with real gpg signed messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._gpg import GpgHome
from tests.conftest import ConfigDirs
from trustd.shared.errors import (
    BadSignatureError,
    RefusedKeyError,
    TrustdError,
    UntrustedSignerError,
)
from trustd.shared.keystore import Keystore
from trustd.shared.keystore._layout import scope_dir
from trustd.shared.ocisig.identity import IdentityMismatchError, SignedIdentity
from trustd.shared.ocisig.name import DockerName, DockerReference
from trustd.shared.ocisig.payload import MalformedSignatureError, build_payload
from trustd.shared.ocisig.simple import DigestMismatchError, NoSignatureError, verify_simple

REF = DockerReference.parse("127.0.0.1:5000/ns/app:v1")
DIGEST = "sha256:" + "ef" * 32
PREFIX = DockerName.parse("docker://127.0.0.1:5000/ns")


@pytest.fixture(scope="module")
def gpg(tmp_path_factory: pytest.TempPathFactory) -> GpgHome:
    return GpgHome(tmp_path_factory.mktemp("simple-gnupg"))


def _message(gpg: GpgHome, fpr: str, payload: bytes, tmp: Path, faked: str | None = None) -> bytes:
    src, out = tmp / "payload.json", tmp / "signature-1"
    src.write_bytes(payload)
    out.unlink(missing_ok=True)
    gpg.run("--local-user", fpr, "--output", str(out), "--sign", str(src), faked_time=faked)
    return out.read_bytes()


def _trust(dirs: ConfigDirs, gpg: GpgHome, fpr: str) -> Keystore:
    """The key file as an admin would have put it there (``add`` refuses unusable keys)."""
    directory = scope_dir(dirs.local, PREFIX)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / fpr.lower()).write_bytes(gpg.export(fpr))
    return Keystore(dirs.system, dirs.local)


def _verify(keystore: Keystore, message: bytes, ref: DockerReference = REF) -> str:
    found = verify_simple(
        [message], keystore.keyring_for(ref.name), ref, DIGEST, SignedIdentity(), where="test"
    )
    return found[0].signer


def test_a_good_signature_verifies_and_names_its_signer(
    gpg: GpgHome, config_dirs: ConfigDirs, tmp_path: Path
) -> None:
    fpr = gpg.generate("Good <good@example.com>")
    keystore = _trust(config_dirs, gpg, fpr)
    assert _verify(keystore, _message(gpg, fpr, build_payload(str(REF), DIGEST), tmp_path)) == (
        fpr.lower()
    )


@pytest.mark.parametrize(
    ("case", "error", "says"),
    [
        ("untrusted", UntrustedSignerError, "not trusted for prefix"),
        ("expired", RefusedKeyError, "expired on 2020-01-02"),
        ("revoked", RefusedKeyError, "has been revoked"),
        ("digest", DigestMismatchError, "the tag moved after signing"),
        ("identity", IdentityMismatchError, "names another image"),
        ("malformed", MalformedSignatureError, "payload is malformed"),
        ("garbage", BadSignatureError, "not an OpenPGP signed message"),
    ],
)
def test_refusals_name_reason_and_fix(
    gpg: GpgHome,
    config_dirs: ConfigDirs,
    tmp_path: Path,
    case: str,
    error: type[TrustdError],
    says: str,
) -> None:
    payload = build_payload(str(REF), DIGEST)
    faked = None
    if case == "expired":
        fpr = gpg.generate(f"{case} <x@example.com>", expire="1d", faked_time="20200101T000000")
        faked = "20200101T010000"
    else:
        fpr = gpg.generate(f"{case} <x@example.com>")
    if case == "digest":
        payload = build_payload(str(REF), "sha256:" + "00" * 32)
    elif case == "identity":
        payload = build_payload("127.0.0.1:5000/ns/other:v1", DIGEST)
    elif case == "malformed":
        payload = b'{"critical": {}, "optional": {}}'
    message = _message(gpg, fpr, payload, tmp_path, faked)
    if case == "garbage":
        message = b"not a signature"
    if case == "revoked":
        gpg.revoke(fpr)
    if case == "untrusted":
        other = gpg.generate("Trusted Other <o@example.com>")
        keystore = _trust(config_dirs, gpg, other)
    else:
        keystore = _trust(config_dirs, gpg, fpr)
    with pytest.raises(error) as info:
        _verify(keystore, message)
    err = info.value
    assert says in err.message, err.message
    assert err.hint  # every refusal says what to do next


def test_no_signature_says_where_it_looked(config_dirs: ConfigDirs) -> None:
    keystore = Keystore(config_dirs.system, config_dirs.local)
    with pytest.raises(NoSignatureError, match="has no signature in file:///look") as info:
        verify_simple(
            [], keystore.keyring_for(REF.name), REF, DIGEST, SignedIdentity(), where="file:///look"
        )
    assert "skopeo copy --sign-by" in info.value.hint

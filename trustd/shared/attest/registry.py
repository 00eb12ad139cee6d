"""The verifier's AK registry: an AK is accepted only once it is enrolled (issue #11).

Enrolment, as Keylime's registrar and go-attestation do it:

1. The attester hands out its *identity* (``rkt attest identity``): the EK's TPM2B_PUBLIC, the
   EK certificate from NV (DER) with any intermediates, and the AK's TPM2B_PUBLIC.
2. :meth:`Registry.challenge` checks that the AK is a restricted signing key that never leaves
   its TPM (fixedTPM, fixedParent, sensitiveDataOrigin, restricted, sign, not decrypt), that
   the EK certificate chains to a configured CA and certifies exactly this EK (or, with
   ``tofu``, records that nothing vouches for the EK), then runs MakeCredential for the EK and
   the AK's Name over a random secret. Only the secret's hash is kept, under ``pending/``.
3. The attester's TPM runs ActivateCredential (``rkt attest activate``); it releases the secret
   only if it holds the EK's private key *and* an object with the AK's Name.
4. :meth:`Registry.enroll` compares the returned secret with the pending one (constant time),
   removes the pending record and records the AK under ``aks/`` as ``ca`` (with the EK
   certificate's issuer) or ``tofu``.

The registry is a directory the verifier owns (0700); every file in it is decoded strictly.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from trustd.shared._dataclass import frozen
from trustd.shared._fsutil import atomic_write
from trustd.shared.attest import _tpm2
from trustd.shared.attest.credential import Credential, make_credential, storage_key, strip_tpm2b
from trustd.shared.attest.errors import AttestFormatError
from trustd.shared.attest.model import HashAlg, PublicKey
from trustd.shared.codec import decode_json, encode
from trustd.shared.errors import LocalStateError, RemoteLiedError, UserError

EK_PUB: Final = "ek.pub"
EK_CERT: Final = "ek.crt"
EK_INTERMEDIATES: Final = "ek-intermediates.pem"
AK_PUB: Final = "ak.pub"
AK_NAME: Final = "ak.name"
SECRET_SIZE: Final = 32
MAX_FILE: Final = 64 * 1024
FIXED_TPM, FIXED_PARENT, SENSITIVE_ORIGIN = 1 << 1, 1 << 4, 1 << 5
RESTRICTED, DECRYPT, SIGN = 1 << 16, 1 << 17, 1 << 18
_AK_REQUIRED: Final = FIXED_TPM | FIXED_PARENT | SENSITIVE_ORIGIN | RESTRICTED | SIGN
Anchor = Literal["ca", "tofu"]


class EnrolmentError(RemoteLiedError):
    """The attester's identity or answer does not check out; ``check`` names the check."""

    def __init__(self, check: str, message: str, *, hint: str = "") -> None:
        super().__init__(
            f"enrolment check {check!r} failed: {message}",
            hint=hint or "do not enrol this AK; ask the machine for a fresh identity",
        )
        self.check = check


@frozen
class Identity:
    """What ``rkt attest identity`` writes: the EK, its certificate chain and the AK."""

    ek_public: bytes  # TPM2B_PUBLIC
    ek_cert: bytes | None  # DER
    intermediates: tuple[bytes, ...]  # DER
    ak_public: bytes  # TPM2B_PUBLIC

    @classmethod
    def load(cls, directory: Path) -> Identity:
        def read(name: str) -> bytes | None:
            path = directory / name
            try:
                with path.open("rb") as f:
                    data = f.read(MAX_FILE + 1)
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise UserError(f"{path}: {exc.strerror}") from exc
            if len(data) > MAX_FILE:
                raise UserError(f"{path} is larger than {MAX_FILE} bytes")
            return data

        ek, ak = read(EK_PUB), read(AK_PUB)
        if ek is None or ak is None:
            raise UserError(
                f"{directory} holds no {EK_PUB} and {AK_PUB}",
                hint="on the machine: rkt attest identity --out DIR",
            )
        chain = read(EK_INTERMEDIATES)
        try:
            intermediates = tuple(
                c.public_bytes(serialization.Encoding.DER)
                for c in (x509.load_pem_x509_certificates(chain) if chain else ())
            )
        except ValueError as exc:
            raise AttestFormatError(str(directory / EK_INTERMEDIATES), "PEM", str(exc)) from None
        return cls(ek, read(EK_CERT), intermediates, ak)


@frozen
class EnrolledAk:
    """One registry record (``aks/<sha256 of the AK's SubjectPublicKeyInfo>.json``)."""

    version: Literal[1]
    ak_name: str  # hex
    ak_public: str  # hex TPM2B_PUBLIC
    ek_public: str  # hex TPM2B_PUBLIC
    anchor: Anchor
    ek_issuer: str | None  # the EK certificate's issuer (ca), None for tofu
    ek_cert_sha256: str | None
    enrolled_at: str

    def check_signer(self, qualified_signer: bytes) -> None:
        """The quote's ``qualifiedSigner`` is this AK as a primary key of the owner hierarchy
        (how trustd derives it, ADR 0007): the TPM that signed names the enrolled key."""
        name = bytes.fromhex(self.ak_name)
        alg = HashAlg.from_id(int.from_bytes(name[:2], "big"))
        owner = (0x40000001).to_bytes(4, "big")  # TPM_RH_OWNER
        expected = None if alg is None else name[:2] + alg.digest(owner + name)
        if expected is None or not hmac.compare_digest(expected, qualified_signer):
            raise EnrolmentError(
                "qualified-signer",
                "the quote's qualifiedSigner is not the enrolled AK under the owner hierarchy",
                hint="the quote was not made by the enrolled AK as trustd derives it",
            )

    def describe(self) -> str:
        if self.anchor == "tofu":
            return "TOFU (enrolled without an EK certificate check; nothing vouches for the TPM)"
        return f"CA-anchored (EK certificate issued by {self.ek_issuer})"


@frozen
class Pending:
    """A challenge sent and not yet answered (``pending/<challenge id>.json``)."""

    version: Literal[1]
    ak_name: str
    ak_public: str
    ek_public: str
    anchor: Anchor
    ek_issuer: str | None
    ek_cert_sha256: str | None
    secret_sha256: str
    created_at: str


def check_ak(tpm2b_public: bytes) -> tuple[PublicKey, bytes]:
    """The AK's key and Name; refused unless it is a restricted signing key bound to its TPM."""
    key, name, attributes = _tpm2.parse_public(strip_tpm2b(tpm2b_public, "AK TPM2B_PUBLIC"))
    if attributes & _AK_REQUIRED != _AK_REQUIRED or attributes & DECRYPT:
        raise EnrolmentError(
            "ak-attributes",
            f"objectAttributes 0x{attributes:08x}: an AK must be fixedTPM, fixedParent, "
            "sensitiveDataOrigin, restricted and sign-only",
            hint="a key that can leave its TPM or sign anything cannot vouch for quotes",
        )
    return key, name


def _spki(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(key: PublicKey) -> str:
    """The registry's file name for an AK: sha256 of its SubjectPublicKeyInfo."""
    return hashlib.sha256(_spki(key)).hexdigest()


def load_anchors(pem: bytes, source: str) -> tuple[x509.Certificate, ...]:
    try:
        anchors = tuple(x509.load_pem_x509_certificates(pem))
    except ValueError as exc:
        raise AttestFormatError(source, "PEM", f"no certificate: {exc}") from None
    return anchors


def check_ek_cert(
    identity: Identity, ek_key: PublicKey, anchors: tuple[x509.Certificate, ...]
) -> str:
    """The EK certificate certifies this EK and chains to one of ``anchors``: its issuer.

    The chain is checked link by link (issuer name, signature, validity, CA flag), as Keylime
    and go-attestation do, not by an RFC 5280 path validator: EK certificates carry a critical
    SAN of TPM directory attributes and an empty subject that web-PKI validators refuse.
    """
    if identity.ek_cert is None:
        raise EnrolmentError(
            "ek-cert",
            "the TPM has no EK certificate in NV",
            hint="enrol with --tofu if you trust this machine's root another way",
        )
    try:
        leaf = x509.load_der_x509_certificate(identity.ek_cert)
        pool = [x509.load_der_x509_certificate(d) for d in identity.intermediates]
    except ValueError as exc:
        raise AttestFormatError("EK certificate", "DER", str(exc)) from None
    if _spki(leaf.public_key()) != _spki(ek_key):  # type: ignore[arg-type]
        raise EnrolmentError("ek-cert", "the EK certificate certifies another key than the EK")
    now = datetime.now(UTC)
    cert, seen = leaf, 0
    while seen <= len(pool):
        _valid(cert, now)
        for anchor in anchors:
            if _issued_by(cert, anchor):
                _valid(anchor, now)
                return leaf.issuer.rfc4514_string()
        parent = next((p for p in pool if _issued_by(cert, p) and _is_ca(p)), None)
        if parent is None:
            break
        cert, seen = parent, seen + 1
    raise EnrolmentError(
        "ek-cert",
        f"the EK certificate (issuer {leaf.issuer.rfc4514_string()}) does not chain to a "
        "configured CA",
        hint="configure the TPM manufacturer's CA (--ca), or enrol with --tofu",
    )


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _valid(cert: x509.Certificate, now: datetime) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise EnrolmentError(
            "ek-cert", f"certificate {cert.subject.rfc4514_string()} is not valid now"
        )


class Registry:
    """A directory of enrolled AKs (``aks/``) and open challenges (``pending/``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _dir(self, name: str, *, create: bool) -> Path:
        if create:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        sub = self.path / name
        if create:
            sub.mkdir(mode=0o700, exist_ok=True)
        try:
            st = sub.lstat()
        except FileNotFoundError:
            return sub
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise LocalStateError(
                f"{sub} is not a directory of uid {os.geteuid()} that only it can change",
                hint=f"the registry must be the verifier's own: chmod go-w {sub}",
            )
        return sub

    def challenge(
        self, identity: Identity, anchors: tuple[x509.Certificate, ...] | None
    ) -> tuple[str, Credential]:
        """Check the identity, make a credential for it; ``anchors`` None: TOFU."""
        _, name = check_ak(identity.ak_public)
        ek = storage_key(strip_tpm2b(identity.ek_public, "EK TPM2B_PUBLIC"))
        issuer = None if anchors is None else check_ek_cert(identity, ek.key, anchors)
        secret = os.urandom(SECRET_SIZE)
        credential = make_credential(ek, name, secret)
        challenge_id = hashlib.sha256(credential.to_file()).hexdigest()
        pending = Pending(
            1,
            name.hex(),
            identity.ak_public.hex(),
            identity.ek_public.hex(),
            "tofu" if anchors is None else "ca",
            issuer,
            None if identity.ek_cert is None else hashlib.sha256(identity.ek_cert).hexdigest(),
            hashlib.sha256(secret).hexdigest(),
            _now(),
        )
        _write(self._dir("pending", create=True) / f"{challenge_id}.json", pending)
        return challenge_id, credential

    def enroll(self, challenge: bytes, secret: bytes) -> EnrolledAk:
        """The attester's answer to ``challenge``: the AK is enrolled if it is the secret."""
        challenge_id = hashlib.sha256(challenge).hexdigest()
        path = self._dir("pending", create=False) / f"{challenge_id}.json"
        try:
            pending = decode_json(_read(path), Pending, str(path))
        except FileNotFoundError:
            raise EnrolmentError(
                "activation",
                "this registry sent no such challenge (or it was answered already)",
                hint="make a new one: rkt attest challenge",
            ) from None
        path.unlink()  # one answer per challenge, right or wrong
        given = hashlib.sha256(secret).hexdigest()
        if not hmac.compare_digest(given, pending.secret_sha256):
            raise EnrolmentError(
                "activation",
                "the returned secret is not the challenge's: the TPM that answered does not "
                "hold this EK and this AK together",
            )
        record = EnrolledAk(
            1,
            pending.ak_name,
            pending.ak_public,
            pending.ek_public,
            pending.anchor,
            pending.ek_issuer,
            pending.ek_cert_sha256,
            _now(),
        )
        key, _ = check_ak(bytes.fromhex(record.ak_public))
        _write(self._dir("aks", create=True) / f"{key_id(key)}.json", record)
        return record

    def lookup(self, key: PublicKey) -> EnrolledAk:
        """The enrolment record of ``key``; an AK never activated is refused."""
        path = self._dir("aks", create=False) / f"{key_id(key)}.json"
        try:
            data = _read(path)
        except FileNotFoundError:
            raise EnrolmentError(
                "enrolled",
                f"the quote's AK is not enrolled in {self.path} (no credential activation)",
                hint="enrol it first: rkt attest identity, challenge, activate, enroll",
            ) from None
        return decode_json(data, EnrolledAk, str(path))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _read(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_FILE + 1)
    if len(data) > MAX_FILE:
        raise LocalStateError(f"{path} is larger than {MAX_FILE} bytes", hint=f"remove {path}")
    return data


def _write(path: Path, record: EnrolledAk | Pending) -> None:
    data = json.dumps(encode(record), indent=2, sort_keys=True).encode() + b"\n"
    atomic_write(path, data, mode=0o600)

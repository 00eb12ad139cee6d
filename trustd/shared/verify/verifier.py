"""Detached OpenPGP signature verification against a :class:`Keyring`.

Order of checks, each with its own refusal: the signature parses; its hash is on the
allow-list; its issuer is in the keyring for the image name; that key (and the subkey that
signed) is neither revoked, expired now, nor weak; and finally Sequoia checks the
cryptography over the exact bytes. Failure raises; success returns a VerifiedSignature.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pysequoia
from pysequoia.packet import HashAlgorithm, PacketPile, Tag

from trustd.shared.errors import (
    BadSignatureError,
    RefusedKeyError,
    TrustdError,
    UntrustedSignerError,
)
from trustd.shared.verify._mpi import repair_go_mpis
from trustd.shared.verify.keys import PublicKey
from trustd.shared.verify.model import (
    _VERIFIER_TOKEN,
    Keyring,
    TrustedKey,
    VerifiedSignature,
    format_fingerprint,
)

# Allow-list (CONVENTIONS 10). SHA-1, MD5 and RIPEMD-160 are refused with a reason.
ALLOWED_HASHES = (
    HashAlgorithm.SHA256,
    HashAlgorithm.SHA384,
    HashAlgorithm.SHA512,
    HashAlgorithm.SHA224,
    HashAlgorithm.SHA3_256,
    HashAlgorithm.SHA3_512,
)


def _name(enum_value: object) -> str:
    return repr(enum_value).split(".")[-1]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _parse_signature(signature: bytes, what: str) -> pysequoia.Sig:
    try:
        return pysequoia.Sig.from_bytes(signature)
    except (RuntimeError, ValueError) as exc:
        repaired = repair_go_mpis(signature)  # Go's x/crypto/openpgp MPI lengths (_mpi.py)
        if repaired is not None:
            return _parse_signature(repaired, what)
        raise BadSignatureError(
            f"the signature for {what} is not an OpenPGP signature: {_first_line(exc)}",
            hint="sign with: gpg --armor --detach-sign IMAGE.aci",
        ) from exc


def _issuer(sig: pysequoia.Sig, what: str) -> str:
    issuer = sig.issuer_fingerprint or sig.issuer_key_id
    if not issuer:
        raise BadSignatureError(f"the signature for {what} does not name the key that made it")
    return issuer


def _check_key(trusted: TrustedKey, signing_fpr: str, subject: str, now: datetime) -> None:
    key = trusted.key
    shown = format_fingerprint(key.fingerprint)
    hint = f'ask the publisher for a current key, then: rkt trust --prefix "{subject}"'
    refusal = key.refusal(now)
    if refusal:
        raise RefusedKeyError(f"key {shown} ({trusted.scope_text}) {refusal}", hint=hint)
    if signing_fpr == key.fingerprint:
        return
    sub = next((s for s in key.subkeys if s.fingerprint == signing_fpr), None)
    sub_problem = (
        "is not a subkey of it"
        if sub is None
        else "has been revoked"
        if sub.revoked
        else f"expired on {sub.expires:%Y-%m-%d}"
        if sub.expires and sub.expires <= now
        else "is not a signing subkey"
        if not sub.can_sign
        else None
    )
    if sub_problem:
        raise RefusedKeyError(
            f"signing subkey {format_fingerprint(signing_fpr)} of key {shown} {sub_problem}",
            hint=hint,
        )


def _signing_fingerprint(key: PublicKey, issuer: str) -> str:
    issuer = issuer.lower()
    for fpr in key.key_ids():
        if fpr == issuer or fpr.endswith(issuer):
            return fpr
    return key.fingerprint


def _crypto_check(data: bytes | Path, sig: pysequoia.Sig, key: PublicKey, what: str) -> None:
    try:
        if isinstance(data, Path):
            result = pysequoia.verify(file=str(data), store=lambda _ids: [key.cert], signature=sig)
        else:
            result = pysequoia.verify(bytes=data, store=lambda _ids: [key.cert], signature=sig)
    except RuntimeError as exc:
        raise BadSignatureError(
            f"the signature by key {format_fingerprint(key.fingerprint)} does not match {what}",
            hint="the data or the signature was altered; fetch both again from the publisher",
        ) from exc
    if not result.valid_sigs:  # pragma: no cover - Sequoia raises instead
        raise BadSignatureError(f"no valid signature over {what}")


def trusted_signer(
    sig: pysequoia.Sig, keyring: Keyring, now: datetime, *, hint: str
) -> tuple[TrustedKey, str]:
    """The trusted key that made ``sig`` and its signing (sub)key's fingerprint, before any
    cryptography: an allowed hash, an issuer, a key trusted for the keyring's subject that
    is usable now; or raise. ``hint`` says how to re-sign with a strong hash."""
    subject = str(keyring.subject)
    what = f'image "{subject}"'
    if sig.hash_algorithm not in ALLOWED_HASHES:
        raise BadSignatureError(
            f"the signature for {what} uses {_name(sig.hash_algorithm)}, which is refused",
            hint=hint,
        )
    issuer = _issuer(sig, what)
    trusted = keyring.find(issuer)
    if trusted is None:
        raise _untrusted(subject, issuer, keyring)
    signing_fpr = _signing_fingerprint(trusted.key, issuer)
    _check_key(trusted, signing_fpr, subject, now)
    return trusted, signing_fpr


def verify_detached(
    data: bytes | Path,
    signature: bytes,
    keyring: Keyring,
    *,
    now: datetime | None = None,
) -> VerifiedSignature:
    """Verify ``signature`` over ``data`` (bytes, or a file streamed by Sequoia) or raise."""
    now = now or datetime.now(UTC)
    subject = str(keyring.subject)
    what = f'image "{subject}"'
    sig = _parse_signature(signature, what)
    trusted, signing_fpr = trusted_signer(
        sig,
        keyring,
        now,
        hint="re-sign with SHA-256 or stronger: gpg --digest-algo SHA512 --detach-sign",
    )
    _crypto_check(data, sig, trusted.key, what)
    return signature_proof(sig, keyring, trusted, signing_fpr)


def signature_proof(
    sig: pysequoia.Sig, keyring: Keyring, trusted: TrustedKey, signing_fpr: str
) -> VerifiedSignature:
    """The proof that ``trusted`` (its key ``signing_fpr``) made ``sig`` for ``keyring``'s
    subject; only for a signature whose bytes were checked."""
    return VerifiedSignature(
        subject=keyring.subject,
        signer=trusted.key.fingerprint,
        signing_key=signing_fpr,
        user_ids=trusted.key.user_ids,
        created=sig.created,
        hash_algorithm=_name(sig.hash_algorithm),
        trusted_via=f"{trusted.scope_text} ({trusted.level})",
        _token=_VERIFIER_TOKEN,
    )


def _untrusted(subject: str, issuer: str, keyring: Keyring) -> UntrustedSignerError:
    message = (
        f'image "{subject}" is signed by key {format_fingerprint(issuer)}, '
        f'which is not trusted for prefix "{subject}"'
    )
    if keyring.problems:
        message += "; key files skipped: " + "; ".join(keyring.problems)
    return UntrustedSignerError(message, hint=f'run: rkt trust --prefix "{subject}"')


MAX_SIGNATURES = 16
_ARMOR = re.compile(rb"-----BEGIN PGP SIGNATURE-----.*?-----END PGP SIGNATURE-----", re.S)


def split_signatures(signature: bytes) -> list[bytes]:
    """The signature packets of a detached signature file (gpg -u A -u B --detach-sign, or
    concatenated files); one element when it holds one, or cannot be split."""
    blocks = _ARMOR.findall(signature) or [signature]
    parts: list[bytes] = []
    for block in blocks:
        try:
            packets = list(PacketPile.from_bytes(block))
        except (RuntimeError, ValueError):
            return [signature]
        parts += [bytes(p) for p in packets if p.tag == Tag.Signature]
    return parts if len(parts) > 1 else [signature]


def verify_all(
    data: bytes | Path, signature: bytes, keyring: Keyring, *, now: datetime | None = None
) -> tuple[VerifiedSignature, ...]:
    """Every signature in the file that verifies, one per distinct signer (for k-of-n
    policies). At least one must verify; otherwise the first refusal is raised."""
    parts = split_signatures(signature)
    if len(parts) > MAX_SIGNATURES:
        raise BadSignatureError(
            f"the signature file holds {len(parts)} signatures (at most {MAX_SIGNATURES})"
        )
    verified: dict[str, VerifiedSignature] = {}
    refusals: list[TrustdError] = []
    for part in parts:
        try:
            result = verify_detached(data, part, keyring, now=now)
        except TrustdError as exc:
            refusals.append(exc)
            continue
        verified.setdefault(result.signer, result)
    if not verified:
        raise refusals[0]
    return tuple(verified.values())

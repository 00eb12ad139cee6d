"""OpenPGP *signed messages* (``gpg --sign``, what containers/image simple signing stores):
the signed content travels inside the signature, and is returned only once it verified.

The same checks as :func:`verify_detached`, in the same order: the message parses and holds
exactly one signature (containers/image refuses more); its hash is on the allow-list; its
issuer is in the keyring; that key is usable now; Sequoia checks the cryptography.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pysequoia
from pysequoia.packet import PacketPile, Tag

from trustd.shared.errors import BadSignatureError
from trustd.shared.verify.model import Keyring, VerifiedSignature
from trustd.shared.verify.verifier import _first_line, signature_proof, trusted_signer

MAX_MESSAGE = 4 * 1024 * 1024


def _malformed(what: str, why: str) -> BadSignatureError:
    return BadSignatureError(
        f"the signature for {what} is not an OpenPGP signed message: {why}",
        hint="simple signatures are made by: skopeo copy --sign-by FINGERPRINT (or gpg --sign)",
    )


def _one_signature(message: bytes, what: str) -> pysequoia.Sig:
    if len(message) > MAX_MESSAGE:
        raise _malformed(what, f"it is {len(message)} bytes (at most {MAX_MESSAGE})")
    try:
        packets = list(PacketPile.from_bytes(message))
        sigs = [pysequoia.Sig.from_bytes(bytes(p)) for p in packets if p.tag == Tag.Signature]
        literal = any(p.tag == Tag.Literal for p in packets)
    except (RuntimeError, ValueError) as exc:
        raise _malformed(what, _first_line(exc)) from exc
    if not literal or len(sigs) != 1:
        raise _malformed(what, f"it holds {len(sigs)} signatures and {int(literal)} data packets")
    return sigs[0]


def verify_message(
    message: bytes, keyring: Keyring, *, now: datetime | None = None
) -> tuple[VerifiedSignature, bytes]:
    """(proof, the signed content) of a signed message by a key in ``keyring``, or raise."""
    now = now or datetime.now(UTC)
    subject = str(keyring.subject)
    what = f'image "{subject}"'
    sig = _one_signature(message, what)
    trusted, signing_fpr = trusted_signer(
        sig, keyring, now, hint="re-sign with SHA-256 or stronger (gpg --digest-algo SHA256)"
    )
    try:
        result = pysequoia.verify(bytes=message, store=lambda _ids: [trusted.key.cert])
    except RuntimeError as exc:
        raise BadSignatureError(
            f"the signature for {what} by key {trusted.key.fingerprint.upper()} does not verify: "
            f"{_first_line(exc)}",
            hint="the signature was altered; fetch it again from the publisher",
        ) from exc
    if not result.valid_sigs or result.bytes is None:  # pragma: no cover - Sequoia raises
        raise BadSignatureError(f"no valid signature over {what}")
    proof = signature_proof(sig, keyring, trusted, signing_fpr)
    return proof, result.bytes

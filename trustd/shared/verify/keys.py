"""Public keys as trustd sees them: parsed by Sequoia, judged by our allow-list.

Sequoia's standard policy already rejects SHA-1 self-signatures and RSA-1024; we read the
same facts out so that every refusal names its reason (CONVENTIONS 9-10), and we add the
check Sequoia leaves to callers: a key that has expired *now* is refused even for a
signature made before the expiry, because expiry is how image keys are rotated out.
"""

from __future__ import annotations

import warnings
from dataclasses import field
from datetime import UTC, datetime

import pysequoia
from pysequoia.packet import Packet, PacketPile, PublicKeyAlgorithm, SignatureType, Tag

from trustd.shared._dataclass import frozen
from trustd.shared.errors import UserError
from trustd.shared.verify._mpi import repair_go_mpis

MIN_RSA_BITS = 2048
# pysequoia's enums compare but do not hash: tuples, not sets.
_RSA = (PublicKeyAlgorithm.RSAEncryptSign, PublicKeyAlgorithm.RSASign)
_ALLOWED_OTHER = (
    PublicKeyAlgorithm.EdDSA,
    PublicKeyAlgorithm.ECDSA,
    PublicKeyAlgorithm.Ed25519,
    PublicKeyAlgorithm.Ed448,
)


class KeyParseError(UserError):
    """Bytes that are not an OpenPGP public key."""


@frozen
class SubKey:
    fingerprint: str
    created: datetime | None
    expires: datetime | None
    revoked: bool
    can_sign: bool


@frozen
class PublicKey:
    """One OpenPGP certificate: the primary key, its user IDs and its subkeys."""

    fingerprint: str
    user_ids: tuple[str, ...]
    created: datetime | None
    expires: datetime | None
    revoked: bool
    algorithm: str
    bits: int | None
    subkeys: tuple[SubKey, ...]
    weak_reason: str | None
    cert: pysequoia.Cert = field(repr=False, compare=False)

    @property
    def armored(self) -> str:
        """The armored public certificate (never secret key material)."""
        return str(self.cert)

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and self.expires <= now

    def refusal(self, now: datetime) -> str | None:
        """Why this key may not vouch for anything right now, or None."""
        if self.revoked:
            return "has been revoked"
        if self.weak_reason:
            return f"is too weak: {self.weak_reason}"
        if self.expires is not None and self.expired(now):
            return f"expired on {self.expires:%Y-%m-%d %H:%M:%S} UTC"
        return None

    def key_ids(self) -> set[str]:
        """Fingerprints of the primary key and every subkey (lowercase hex)."""
        return {self.fingerprint} | {s.fingerprint for s in self.subkeys}


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _rsa_bits(body: bytes) -> int | None:
    """Modulus size from a v4/v6 public-key packet body (the MPI's bit-count prefix)."""
    if len(body) < 12:
        return None
    offset = 6 if body[0] == 4 else 10 if body[0] == 6 else None
    if offset is None:
        return None
    return int.from_bytes(body[offset : offset + 2], "big")


def _weakness(algorithm: PublicKeyAlgorithm, bits: int | None) -> str | None:
    if algorithm in _RSA:
        if bits is None or bits < MIN_RSA_BITS:
            return f"RSA key of {bits} bits (at least {MIN_RSA_BITS} required)"
        return None
    if algorithm in _ALLOWED_OTHER:
        return None
    return f"{algorithm!r} is not an allowed signing algorithm (RSA>=2048, EdDSA, ECDSA)"


def _subkey(key: Packet, signatures: list[Packet]) -> SubKey:
    bindings = [s for s in signatures if s.signature_type == SignatureType.SubkeyBinding]
    bindings.sort(key=lambda s: s.signature_created or datetime.min.replace(tzinfo=UTC))
    latest = bindings[-1] if bindings else None
    flags = latest.key_flags if latest else None
    period = latest.key_validity_period if latest else None
    created = key.key_created
    return SubKey(
        fingerprint=key.fingerprint or "",
        created=created,
        expires=created + period if created and period else None,
        revoked=any(s.signature_type == SignatureType.SubkeyRevocation for s in signatures),
        can_sign=bool(flags and flags.signing),
    )


def _subkeys(cert: pysequoia.Cert) -> tuple[SubKey, ...]:
    """Subkeys with their binding facts, read from the certificate's packets.

    A revocation signature after a subkey marks it revoked without checking that signature
    cryptographically: a forged revocation can only make us refuse, never accept.
    """
    groups: list[tuple[Packet, list[Packet]]] = []
    for packet in PacketPile.from_bytes(bytes(cert)):
        if packet.tag == Tag.PublicSubkey:
            groups.append((packet, []))
        elif packet.tag == Tag.Signature and groups:
            groups[-1][1].append(packet)
    return tuple(_subkey(key, sigs) for key, sigs in groups)


def _inspect(cert: pysequoia.Cert) -> PublicKey:
    primary = next(iter(PacketPile.from_bytes(bytes(cert))))
    algorithm = primary.key_algorithm
    bits = _rsa_bits(primary.body) if algorithm in _RSA else None
    weak = _weakness(algorithm, bits) if algorithm is not None else "unknown algorithm"
    user_ids: tuple[str, ...] = ()
    expires: datetime | None = None
    try:
        user_ids = tuple(str(u) for u in cert.user_ids)
        expires = cert.expiration
    except RuntimeError as exc:  # Sequoia's policy refused the self-signatures
        weak = weak or (
            f"no self-signature is acceptable ({_first_line(exc)}); SHA-1 bindings are refused, "
            "re-issue them with: gpg --quick-set-expire FINGERPRINT 0"
        )
    return PublicKey(
        fingerprint=cert.fingerprint,
        user_ids=user_ids,
        created=primary.key_created,
        expires=expires,
        revoked=cert.is_revoked,
        algorithm=repr(algorithm).removeprefix("PublicKeyAlgorithm."),
        bits=bits,
        subkeys=_subkeys(cert),
        weak_reason=weak,
        cert=cert,
    )


def parse_public_keys(data: bytes, *, source: str) -> list[PublicKey]:
    """Every certificate in ``data`` (armored or binary); secret parts are dropped."""
    with warnings.catch_warnings():  # pysequoia nudges secret keys towards Tsk; we drop them
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            # Go-made keys (openpgp.NewEntity): exact MPI lengths in self-signatures (_mpi.py)
            certs = pysequoia.Cert.split_bytes(repair_go_mpis(data) or data)
        except (RuntimeError, ValueError) as exc:
            raise KeyParseError(
                f"{source} is not an OpenPGP public key: {_first_line(exc)}",
                hint="export the key with: gpg --armor --export FINGERPRINT",
            ) from exc
        if not certs:
            raise KeyParseError(f"{source} holds no OpenPGP key")
        return [_inspect(_public_only(c) if c.has_secret_keys else c) for c in certs]


def _public_only(cert: pysequoia.Cert) -> pysequoia.Cert:
    return pysequoia.Cert.from_bytes(str(cert).encode())

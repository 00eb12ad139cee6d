"""The keyring a verification runs against, and the only proof that it succeeded."""

from __future__ import annotations

from dataclasses import field
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

from trustd.shared._dataclass import frozen
from trustd.shared.verify.keys import PublicKey

Level = Literal["system", "local"]


class Name(Protocol):
    """What a keyring is for: an AC Identifier (ACIs) or a Docker name (``docker://``);
    its ``str`` is how trust prefixes spell it."""

    @property
    def segments(self) -> tuple[str, ...]: ...


# Only the verifier holds this; VerifiedSignature refuses to exist without it (CONVENTIONS 4).
_VERIFIER_TOKEN = object()


def format_fingerprint(fingerprint: str) -> str:
    """The one spelling of a fingerprint in everything trustd prints, for people and machines
    alike: 40 upper-case hex digits, no spaces (issue #15). One word copies into
    ``rkt trust remove``, a policy pin or grep; fingerprints are read in any case and spacing."""
    return "".join(fingerprint.split()).upper()


@frozen
class TrustedKey:
    """A key from the keystore and where it was found."""

    key: PublicKey
    scope: Name | None  # None: root.d (trusted for every image)
    level: Level
    path: Path

    @property
    def scope_text(self) -> str:
        return "root" if self.scope is None else f'prefix "{self.scope}"'


@frozen
class Keyring:
    """The keys trusted for one image name, and the key files that had to be skipped."""

    subject: Name
    keys: tuple[TrustedKey, ...]
    problems: tuple[str, ...] = ()

    def find(self, issuer: str) -> TrustedKey | None:
        """The trusted key whose primary or subkey fingerprint (or 16-hex key ID) is ``issuer``."""
        issuer = issuer.lower()
        for trusted in self.keys:
            ids = trusted.key.key_ids()
            if issuer in ids or (len(issuer) == 16 and any(i.endswith(issuer) for i in ids)):
                return trusted
        return None


@frozen
class VerifiedSignature:
    """Proof that ``subject``'s bytes were signed by a key trusted for it, checked just now."""

    subject: Name
    signer: str  # primary key fingerprint, 40 lowercase hex
    signing_key: str  # the (sub)key that made the signature
    user_ids: tuple[str, ...]
    created: datetime | None
    hash_algorithm: str
    trusted_via: str
    _token: object = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._token is not _VERIFIER_TOKEN:
            raise TypeError(
                "VerifiedSignature is made only by trustd.shared.verify.verify_detached"
            )

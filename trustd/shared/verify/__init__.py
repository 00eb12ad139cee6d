"""OpenPGP keys and detached-signature verification (pysequoia; docs/adr/0001)."""

from trustd.shared.verify.inline import verify_message
from trustd.shared.verify.keys import PublicKey, SubKey, parse_public_keys
from trustd.shared.verify.model import Keyring, TrustedKey, VerifiedSignature, format_fingerprint
from trustd.shared.verify.verifier import verify_all, verify_detached

__all__ = [
    "Keyring",
    "PublicKey",
    "SubKey",
    "TrustedKey",
    "VerifiedSignature",
    "format_fingerprint",
    "parse_public_keys",
    "verify_all",
    "verify_detached",
    "verify_message",
]

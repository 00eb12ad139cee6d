"""Re-encode RSA signature MPIs that Go's ``x/crypto/openpgp`` writes with a wrong length.

Why (found with ``sq packet dump``): Go's signer stores the RSA signature as the raw
PKCS#1 output, which is as long as the modulus, and declares ``8 * len`` bits. When the
value's top byte is below 0x80 (about half of all signatures) the declared bit count is
larger than the number's real length: RFC 4880 section 3.2 forbids that, GnuPG tolerates
it, and Sequoia refuses the packet ("Malformed MPI: leading bit is not set"), so pysequoia
reports "Not a signature". rkt signs with that library (``openpgp.ArmoredDetachSign``), and
keys made by ``openpgp.NewEntity`` carry self-signatures with the same flaw.

The repair changes the encoding only: the same integer is re-written with its exact bit
count and without leading zero octets. The MPI is not covered by the signature's hash, so
nothing the signer vouched for changes, and Sequoia then checks the cryptography, hash
and key policy as for any other signature. Framing and de-armoring stay with Sequoia
(``PacketPile``); this module walks only the fixed v4 signature body layout to find the
MPI, and leaves every other packet byte for byte as it was.
"""

from __future__ import annotations

import re
from typing import Final

from pysequoia.packet import PacketPile, Tag

_RSA_ALGORITHMS: Final = (1, 3)  # RSA (Encrypt or Sign), RSA Sign-Only
_SIGNATURE_TAG: Final = 2
_ARMOR_BLOCK = re.compile(rb"-----BEGIN PGP [A-Z ,]+-----.*?-----END PGP [A-Z ,]+-----", re.S)


def _u16(body: bytes, at: int) -> int:
    return int.from_bytes(body[at : at + 2], "big")


def canonical_rsa_body(body: bytes) -> bytes | None:
    """The v4 RSA signature body with its MPI re-encoded exactly, or None when the body
    is not a v4 RSA signature, is already canonical, or is malformed in another way."""
    if len(body) < 6 or body[0] != 4 or body[2] not in _RSA_ALGORITHMS:
        return None
    at = 4
    at += 2 + _u16(body, at)  # hashed subpackets
    if at + 2 > len(body):
        return None
    at += 2 + _u16(body, at)  # unhashed subpackets
    at += 2  # left 16 bits of the digest
    if at + 2 > len(body):
        return None
    declared = _u16(body, at)
    value = body[at + 2 :]
    if len(value) != (declared + 7) // 8:
        return None  # not Go's pattern (the MPI must end the body): leave it to Sequoia
    number = int.from_bytes(value, "big")
    if number == 0 or number.bit_length() == declared:
        return None
    bits = number.bit_length()
    return body[:at] + bits.to_bytes(2, "big") + number.to_bytes((bits + 7) // 8, "big")


def _packet(tag: int, body: bytes) -> bytes:
    """A new-format packet (RFC 4880 section 4.2.2)."""
    size = len(body)
    if size < 192:
        length = bytes([size])
    elif size < 8384:
        size -= 192
        length = bytes([(size >> 8) + 192, size & 0xFF])
    else:
        length = b"\xff" + size.to_bytes(4, "big")
    return bytes([0xC0 | tag]) + length + body


def _repair_block(block: bytes) -> tuple[bytes, bool] | None:
    try:
        packets = list(PacketPile.from_bytes(block))
    except (RuntimeError, ValueError):
        return None
    out: list[bytes] = []
    changed = False
    for packet in packets:
        fixed = canonical_rsa_body(packet.body) if packet.tag == Tag.Signature else None
        if fixed is None:
            out.append(bytes(packet))
        else:
            out.append(_packet(_SIGNATURE_TAG, fixed))
            changed = True
    return b"".join(out), changed


def repair_go_mpis(data: bytes) -> bytes | None:
    """``data`` (armored blocks or binary packets) as binary packets with every Go-style
    RSA signature MPI re-encoded, or None when there was nothing to repair."""
    blocks = _ARMOR_BLOCK.findall(data) or [data]
    parts: list[bytes] = []
    changed = False
    for block in blocks:
        repaired = _repair_block(block)
        if repaired is None:
            return None
        parts.append(repaired[0])
        changed = changed or repaired[1]
    return b"".join(parts) if changed else None

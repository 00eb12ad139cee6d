"""Strict big-endian unmarshalling of the TPM 2.0 structures a quote is made of."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from trustd.shared.attest._reader import Reader
from trustd.shared.attest.model import (
    MAX_PCRS,
    TPM_ST_ATTEST_QUOTE,
    Attest,
    ClockInfo,
    HashAlg,
    PcrSelection,
    PublicKey,
    QuoteInfo,
    SigScheme,
    TpmSignature,
)

MAX_BANKS = 16  # TPM2_NUM_PCR_BANKS
SELECT_MAX = MAX_PCRS // 8
NAME_MAX = 2 + 64  # TPM2B_NAME: alg + largest digest
DATA_MAX = 2 + 64  # TPM2B_DATA: sizeof(TPMT_HA)
DIGEST_MAX = 64
RSA_MAX = 512  # TPM2B_PUBLIC_KEY_RSA: 4096-bit keys
ECC_MAX = 66  # P-521 coordinates

TPM_ALG_RSA = 0x0001
TPM_ALG_ECC = 0x0023
TPM_ALG_NULL = 0x0010
TPM_ALG_ECDAA = 0x001A
CURVES: dict[int, ec.EllipticCurve] = {
    0x0003: ec.SECP256R1(),
    0x0004: ec.SECP384R1(),
    0x0005: ec.SECP521R1(),
}


def hash_alg(reader: Reader, field: str) -> HashAlg:
    alg_id = reader.u16(field)
    alg = HashAlg.from_id(alg_id)
    if alg is None:
        raise reader.fail(field, f"unknown hash algorithm 0x{alg_id:04x}")
    return alg


def pcr_selection(reader: Reader, field: str = "pcrSelect") -> PcrSelection:
    """TPML_PCR_SELECTION: count, then (hash, sizeofSelect, pcrSelect[sizeofSelect]) each."""
    count = reader.u32(f"{field}.count")
    if count > MAX_BANKS:
        raise reader.fail(f"{field}.count", f"{count} banks, at most {MAX_BANKS}")
    banks = []
    for i in range(count):
        alg = hash_alg(reader, f"{field}[{i}].hash")
        size = reader.u8(f"{field}[{i}].sizeofSelect")
        if size > SELECT_MAX:
            raise reader.fail(f"{field}[{i}].sizeofSelect", f"{size} is more than {SELECT_MAX}")
        bits = reader.take(size, f"{field}[{i}].pcrSelect")
        banks.append((alg, selected(bits)))
    return checked_selection(reader, field, banks)


def selected(bits: bytes) -> tuple[int, ...]:
    return tuple(i for i in range(len(bits) * 8) if bits[i // 8] & (1 << (i % 8)))


def checked_selection(
    reader: Reader, field: str, banks: list[tuple[HashAlg, tuple[int, ...]]]
) -> PcrSelection:
    algs = [alg for alg, pcrs in banks if pcrs]
    if len(set(algs)) != len(algs):
        raise reader.fail(field, "a bank is selected twice")
    return PcrSelection(tuple((alg, pcrs) for alg, pcrs in banks if pcrs))


def parse_attest(data: bytes) -> Attest:
    """TPMS_ATTEST. Magic and type are read, not judged: the verifier names those checks."""
    reader = Reader(data, "TPMS_ATTEST")
    magic = reader.u32("magic")
    attest_type = reader.u16("type")
    signer = reader.sized("qualifiedSigner", max_size=NAME_MAX)
    extra = reader.sized("extraData", max_size=DATA_MAX)
    clock = ClockInfo(
        clock=reader.u64("clockInfo.clock"),
        reset_count=reader.u32("clockInfo.resetCount"),
        restart_count=reader.u32("clockInfo.restartCount"),
        safe=_yes_no(reader, "clockInfo.safe"),
    )
    firmware = reader.u64("firmwareVersion")
    quote = None
    if attest_type == TPM_ST_ATTEST_QUOTE:
        selection = pcr_selection(reader, "attested.quote.pcrSelect")
        digest = reader.sized("attested.quote.pcrDigest", max_size=DIGEST_MAX)
        reader.end()
        quote = QuoteInfo(selection, digest)
    return Attest(magic, attest_type, signer, extra, clock, firmware, quote)


def _yes_no(reader: Reader, field: str) -> bool:
    value = reader.u8(field)
    if value > 1:
        raise reader.fail(field, f"TPMI_YES_NO is {value}, must be 0 or 1")
    return value == 1


def parse_signature(data: bytes) -> TpmSignature:
    """TPMT_SIGNATURE for RSASSA, RSAPSS or ECDSA."""
    reader = Reader(data, "TPMT_SIGNATURE")
    scheme_id = reader.u16("sigAlg")
    if scheme_id not in SigScheme._value2member_map_:
        raise reader.fail("sigAlg", f"unsupported signature scheme 0x{scheme_id:04x}")
    scheme = SigScheme(scheme_id)
    alg = hash_alg(reader, "signature.hash")
    if scheme is SigScheme.ECDSA:
        r = reader.sized("signature.signatureR", max_size=ECC_MAX)
        s = reader.sized("signature.signatureS", max_size=ECC_MAX)
        raw = encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))
    else:
        raw = reader.sized("signature.sig", max_size=RSA_MAX)
    reader.end()
    return TpmSignature(scheme, alg, raw)


def parse_public(data: bytes) -> tuple[PublicKey, bytes, int]:
    """TPMT_PUBLIC of an RSA or ECC key -> (key, Name, objectAttributes)."""
    reader = Reader(data, "TPMT_PUBLIC")
    key_type = reader.u16("type")
    name_alg = hash_alg(reader, "nameAlg")
    attributes = reader.u32("objectAttributes")
    reader.sized("authPolicy", max_size=DIGEST_MAX)
    _symmetric(reader)
    if key_type == TPM_ALG_RSA:
        key: PublicKey = _rsa_public(reader)
    elif key_type == TPM_ALG_ECC:
        key = _ecc_public(reader)
    else:
        raise reader.fail("type", f"unsupported key type 0x{key_type:04x} (RSA or ECC only)")
    reader.end()
    name = name_alg.value.to_bytes(2, "big") + name_alg.digest(bytes(data))
    return key, name, attributes


def _symmetric(reader: Reader) -> None:
    """TPMT_SYM_DEF_OBJECT: NULL for a signing key, else algorithm, keyBits and mode."""
    if reader.u16("parameters.symmetric.algorithm") != TPM_ALG_NULL:
        reader.u16("parameters.symmetric.keyBits")
        reader.u16("parameters.symmetric.mode")


def _scheme(reader: Reader, field: str) -> None:
    scheme = reader.u16(f"{field}.scheme")
    if scheme != TPM_ALG_NULL:
        hash_alg(reader, f"{field}.details.hashAlg")
        if scheme == TPM_ALG_ECDAA:
            reader.u16(f"{field}.details.count")


def _rsa_public(reader: Reader) -> rsa.RSAPublicKey:
    _scheme(reader, "parameters.rsaDetail.scheme")
    bits = reader.u16("parameters.rsaDetail.keyBits")
    exponent = reader.u32("parameters.rsaDetail.exponent") or 65537
    modulus = reader.sized("unique.rsa", max_size=RSA_MAX)
    if len(modulus) * 8 != bits or not modulus or not modulus[0] & 0x80:
        raise reader.fail("unique.rsa", f"modulus of {len(modulus)} bytes is not {bits} bits")
    try:
        return rsa.RSAPublicNumbers(exponent, int.from_bytes(modulus, "big")).public_key()
    except ValueError as err:
        raise reader.fail("unique.rsa", f"not a valid RSA key: {err}") from None


def _ecc_public(reader: Reader) -> ec.EllipticCurvePublicKey:
    _scheme(reader, "parameters.eccDetail.scheme")
    curve_id = reader.u16("parameters.eccDetail.curveID")
    _scheme(reader, "parameters.eccDetail.kdf")
    x = reader.sized("unique.ecc.x", max_size=ECC_MAX)
    y = reader.sized("unique.ecc.y", max_size=ECC_MAX)
    curve = CURVES.get(curve_id)
    if curve is None:
        raise reader.fail("parameters.eccDetail.curveID", f"unsupported curve 0x{curve_id:04x}")
    numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
    )
    try:
        return numbers.public_key()
    except ValueError as err:
        raise reader.fail("unique.ecc", f"not a point on the curve: {err}") from None

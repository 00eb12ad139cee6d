"""Quote verification against real quotes (swtpm, a GCP VM) and every way it must refuse."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from tests.unit.attest._vectors import (
    SWTPM,
    SWTPM_NONCE,
    go_bundle,
    go_vector,
    swtpm_bundle,
)
from trustd.shared.attest import (
    AttestFormatError,
    CelLog,
    HashAlg,
    PcrValues,
    QuoteBundle,
    QuoteError,
    check_replay,
    encode_pcr_file,
    load_ak_pem,
    load_ak_tpm,
    parse_cel,
    parse_firmware_log,
    parse_pcr_file,
    parse_signature,
    replay,
    verify_quote,
)
from trustd.shared.errors import RemoteLiedError, UserError

AK = load_ak_pem((SWTPM / "ak.pub.pem").read_bytes(), source="ak.pub.pem")


def flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


def test_swtpm_quote_verifies() -> None:
    verified = verify_quote(swtpm_bundle(), AK, SWTPM_NONCE)
    assert verified.nonce == SWTPM_NONCE
    assert verified.hash_alg is HashAlg.SHA256
    assert verified.quote.selection.describe() == "sha256:0,15"
    assert verified.attest.clock_info.safe
    pcr15 = (SWTPM / "pcr15.sha256.bin").read_bytes()
    assert verified.quoted() == {HashAlg.SHA256: {0: bytes(32), 15: pcr15}}


def test_swtpm_pcr15_is_the_replay_of_one_event() -> None:
    event = hashlib.sha256((SWTPM / "event15.txt").read_bytes()).hexdigest()
    record = {"recnum": 0, "pcr": 15, "digests": [{"hashAlg": "sha256", "digest": event}]}
    record |= {"content_type": "pcclient_std", "content": {"event_type": 13}}
    log = parse_cel(json.dumps([record]).encode())
    verified = verify_quote(swtpm_bundle(), AK, SWTPM_NONCE)
    check_replay(verified, replay(log))  # PCR 0 is absent from the log and zero in the quote
    with pytest.raises(QuoteError) as err:
        check_replay(verified, replay(CelLog(())))
    assert err.value.check == "replay"


def test_swtpm_ak_from_tpmt_public_is_the_same_key_with_its_name() -> None:
    ak = load_ak_tpm((SWTPM / "ak.tpmt_public.bin").read_bytes())
    assert ak.name == (SWTPM / "ak.name").read_bytes()
    assert ak.same_key(AK)
    verify_quote(swtpm_bundle(), ak, SWTPM_NONCE)


def test_pcr_file_round_trips_byte_for_byte() -> None:
    raw = (SWTPM / "quote.pcrs.bin").read_bytes()
    assert encode_pcr_file(parse_pcr_file(raw)) == raw


def test_go_attestation_quote_verifies_with_sha1_allowed_and_replays() -> None:
    vector = go_vector()
    ak = load_ak_tpm(base64.b64decode(vector["AK"]["Public"]))
    verified = verify_quote(go_bundle(), ak, b"", allow_sha1=True, min_nonce_bytes=0)
    assert len(verified.quoted()[HashAlg.SHA1]) == 24
    log = parse_firmware_log(base64.b64decode(vector["Log"]["Raw"]))
    replayed = replay(log)
    extended = set(replayed[HashAlg.SHA1])
    assert extended == {0, 4, 5, 7, 11, 12, 13, 14}
    check_replay(verified, replayed, pcrs=extended)


def test_sha1_is_refused_without_allow_sha1() -> None:
    ak = load_ak_tpm(base64.b64decode(go_vector()["AK"]["Public"]))
    with pytest.raises(QuoteError, match="sha1") as err:
        verify_quote(go_bundle(), ak, b"", min_nonce_bytes=0)
    assert err.value.check == "signature"


def _refusal(bundle: QuoteBundle, nonce: bytes = SWTPM_NONCE) -> str:
    with pytest.raises(QuoteError) as err:
        verify_quote(bundle, AK, nonce)
    assert isinstance(err.value, RemoteLiedError)
    return err.value.check


def test_flipped_signature_byte_fails_signature() -> None:
    sig = (SWTPM / "quote.sig.tpmt_signature.bin").read_bytes()
    assert _refusal(swtpm_bundle(signature=parse_signature(flip(sig, 100)))) == "signature"


@pytest.mark.parametrize("offset", [0, 5, 20, 45, 60, 90, 120])
def test_flipped_attest_byte_fails_signature(offset: int) -> None:
    attest = (SWTPM / "quote.attest.bin").read_bytes()
    assert _refusal(swtpm_bundle(attest=flip(attest, offset))) == "signature"


def test_flipped_pcr_value_fails_pcr_digest() -> None:
    values = parse_pcr_file((SWTPM / "quote.pcrs.bin").read_bytes()).as_dict()
    values[HashAlg.SHA256][15] = flip(values[HashAlg.SHA256][15], 3)
    assert _refusal(swtpm_bundle(pcrs=PcrValues.from_mapping(values))) == "pcr-digest"


def test_wrong_nonce_fails_nonce() -> None:
    assert _refusal(swtpm_bundle(), bytes.fromhex("0011223344556678")) == "nonce"


def test_changed_pcr_selection_fails_pcr_selection() -> None:
    """Same values relabelled: pcrDigest would still match, the signed selection does not."""
    values = parse_pcr_file((SWTPM / "quote.pcrs.bin").read_bytes()).as_dict()
    moved = {HashAlg.SHA256: {0: values[HashAlg.SHA256][0], 16: values[HashAlg.SHA256][15]}}
    assert _refusal(swtpm_bundle(pcrs=PcrValues.from_mapping(moved))) == "pcr-selection"


def test_bundle_ak_that_differs_from_the_pinned_one_is_named_in_the_hint() -> None:
    other = load_ak_tpm(base64.b64decode(go_vector()["AK"]["Public"]))
    with pytest.raises(QuoteError) as err:
        verify_quote(swtpm_bundle(ak=AK), other, SWTPM_NONCE)
    assert err.value.check == "signature"
    assert "different key" in err.value.hint


def test_short_nonce_is_a_user_error() -> None:
    with pytest.raises(UserError, match="nonce"):
        verify_quote(swtpm_bundle(), AK, b"\x01")


def test_verified_quote_cannot_be_made_outside_the_verifier() -> None:
    verified = verify_quote(swtpm_bundle(), AK, SWTPM_NONCE)
    with pytest.raises(TypeError):
        dataclasses.replace(verified, _token=object())


def test_bundle_directory_loads_and_verifies(tmp_path: Path) -> None:
    (tmp_path / "ak.pub.pem").write_bytes((SWTPM / "ak.pub.pem").read_bytes())
    (tmp_path / "quote.attest").write_bytes((SWTPM / "quote.attest.bin").read_bytes())
    (tmp_path / "quote.sig").write_bytes((SWTPM / "quote.sig.tpmt_signature.bin").read_bytes())
    (tmp_path / "quote.pcrs").write_bytes((SWTPM / "quote.pcrs.bin").read_bytes())
    (tmp_path / "eventlog.json").write_text("[]")
    bundle = QuoteBundle.load(tmp_path)
    assert bundle.ak is not None and bundle.ak.same_key(AK)
    verify_quote(bundle, AK, SWTPM_NONCE)
    (tmp_path / "quote.sig").unlink()
    with pytest.raises(UserError, match=r"quote\.sig"):
        QuoteBundle.load(tmp_path)


def test_unrestricted_key_is_not_an_attestation_key() -> None:
    public = bytearray((SWTPM / "ak.tpmt_public.bin").read_bytes())
    public[4:8] = (0x00040072).to_bytes(4, "big")  # sign, but not restricted
    with pytest.raises(AttestFormatError, match="objectAttributes"):
        load_ak_tpm(bytes(public))


@pytest.mark.parametrize(
    ("name", "data", "field"),
    [
        ("unknown hash in signature", b"\x00\x14\x00\x12\x00\x00", "signature.hash"),
        ("unknown scheme", b"\x00\x15\x00\x0b", "sigAlg"),
        ("trailing bytes", b"\x00\x14\x00\x0b\x00\x01\xff\x00", "(end)"),
        ("truncated", b"\x00\x14\x00\x0b\x01\x00\xff", "signature.sig"),
    ],
)
def test_malformed_signature_names_the_field(name: str, data: bytes, field: str) -> None:
    with pytest.raises(AttestFormatError) as err:
        parse_signature(data)
    assert err.value.structure == "TPMT_SIGNATURE"
    assert err.value.field == field, name


def test_pcr_file_with_trailing_bytes_is_refused() -> None:
    raw = (SWTPM / "quote.pcrs.bin").read_bytes()
    with pytest.raises(AttestFormatError, match="digestLists"):
        parse_pcr_file(raw + b"\0")
    with pytest.raises(AttestFormatError):
        parse_pcr_file(raw[:-1])

"""The attester's wire format and the verifier's refusals, on the recorded swtpm quote; the
quoter's bounds (nonce reuse, rate, size) without a TPM."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.attest._vectors import SWTPM, SWTPM_NONCE
from trustd.privileged.executor._attestd import MAX_CHALLENGE, Quoter
from trustd.shared.attest import AttestFormatError, QuoteError, load_ak_pem
from trustd.shared.attest.remote import verify_answer
from trustd.shared.codec import DecodeError
from trustd.unprivileged.attest.server import Refusal, mask_pcrs, parse_target

AK = load_ak_pem((SWTPM / "ak.pub.pem").read_bytes(), source="ak.pub.pem")


def answer(**changes: Any) -> dict[str, Any]:
    parts = ("quote.attest.bin", "quote.sig.tpmt_signature.bin", "quote.pcrs.bin")
    doc: dict[str, Any] = {
        "quote": "r" + ":".join(base64.b64encode((SWTPM / p).read_bytes()).decode() for p in parts),
        "hash_alg": "sha256",
        "pubkey": (SWTPM / "ak.pub.pem").read_text(),
        "trustd_event_log": "[]",
        "mb_measurement_list": None,
        "ima_measurement_list": None,
        "backend": "software (swtpm)",
        "measurement_pcr": 15,
    }
    doc.update(changes)
    return doc


def check(
    doc: dict[str, Any], nonce: bytes = SWTPM_NONCE, requested: tuple[int, ...] = (0,)
) -> Any:
    return verify_answer(doc, source="node", ak=AK, nonce=nonce, requested=requested, policy=None)


def test_the_swtpm_quote_with_its_event_missing_fails_the_replay() -> None:
    """PCR 15 was extended once; a log without that event does not replay to it."""
    with pytest.raises(QuoteError) as err:
        check(answer())
    assert err.value.check == "replay" and "PCR 15" in str(err.value)


def test_an_answer_to_another_nonce_is_refused() -> None:
    with pytest.raises(QuoteError) as err:
        check(answer(), nonce=bytes(16))
    assert err.value.check == "nonce"


def test_a_requested_pcr_the_quote_lacks_is_refused() -> None:
    with pytest.raises(QuoteError) as err:
        check(answer(), requested=(0, 1, 2))
    assert err.value.check == "pcr-selection" and "[1, 2]" in str(err.value)


def test_an_unknown_or_missing_answer_key_is_refused() -> None:
    with pytest.raises(DecodeError, match="boottime"):
        check(answer(boottime=1))
    doc = answer()
    del doc["backend"]
    with pytest.raises(DecodeError, match="backend"):
        check(doc)


@pytest.mark.parametrize("quote", ["", "x:y:z", "rAAAA:BBBB", "r!!:AA==:AA=="])
def test_a_malformed_quote_field_is_refused(quote: str) -> None:
    with pytest.raises(AttestFormatError):
        check(answer(quote=quote))


@pytest.mark.parametrize(
    ("target", "code"),
    [
        ("/v2.1/quotes/integrity?nonce=00112233445566778899&mask=0x80ff", None),
        ("/v2.1/quotes/identity?nonce=0011223344556677&mask=0x1", 404),
        ("/v2.1/quotes/integrity?nonce=0011&mask=0x1", 400),  # too short
        ("/v2.1/quotes/integrity?nonce=zz11223344556677&mask=0x1", 400),
        ("/v2.1/quotes/integrity?nonce=0011223344556677&mask=0x0", 400),
        ("/v2.1/quotes/integrity?nonce=0011223344556677&mask=0x1000000", 400),
        ("/v2.1/quotes/integrity?nonce=0011223344556677&nonce=0011223344556677&mask=1", 400),
        ("/v2.1/quotes/integrity?" + "a=b&" * 9 + "nonce=0011223344556677&mask=1", 400),
        ("/v2.1/quotes/integrity?nonce=" + "00" * 2048 + "&mask=1", 414),
    ],
)
def test_request_targets_are_bounded_and_strict(target: str, code: int | None) -> None:
    parsed = parse_target(target)
    if code is None:
        assert parsed == ("00112233445566778899", [0, 1, 2, 3, 4, 5, 6, 7, 15])
    else:
        assert isinstance(parsed, Refusal) and parsed.code == code


def test_mask_is_pcrs_0_to_23() -> None:
    assert mask_pcrs("ffffff") == list(range(24))
    assert mask_pcrs("0x0") is None


class _Status:
    kind = "swtpm"


class _Bundle:
    attest, signature, pcr_file, ak_pem = b"a", b"s", b"p", b"-----"


class _Measurer:
    """Stands in for the TPM only to count quotes; the real quoter runs in test_attest_remote."""

    pcr = 14

    def __init__(self) -> None:
        self.quotes: list[tuple[bytes, list[int]]] = []

    def status(self) -> _Status:
        return _Status()

    def quote(self, nonce: bytes, pcrs: list[int], out: Path) -> _Bundle:
        self.quotes.append((nonce, pcrs))
        (out / "eventlog.json").write_text("[]")
        return _Bundle()


def challenge(nonce: str, pcrs: list[int] | None = None) -> bytes:
    return json.dumps({"nonce": nonce, "pcrs": pcrs or [0]}).encode()


def test_quoter_adds_its_pcr_refuses_a_reused_nonce_and_bounds_the_rate() -> None:
    measurer = _Measurer()
    quoter = Quoter(measurer, quotes_per_minute=2)
    first = quoter.answer(challenge("00" * 16))
    assert first["status"] == 200 and first["backend"] == "software (swtpm)"
    assert first["mb_measurement_list"] is None  # never the host's log with an swtpm
    assert measurer.quotes == [(bytes(16), [0, 14])]
    again = quoter.answer(challenge("00" * 16))
    assert again["status"] == 400 and "answered before" in again["error"]
    assert quoter.answer(challenge("01" * 16))["status"] == 200
    limited = quoter.answer(challenge("02" * 16))
    assert limited["status"] == 429 and len(measurer.quotes) == 2


@pytest.mark.parametrize(
    "line",
    [
        b"{}",
        b'{"nonce": "00", "pcrs": [0], "extra": 1}',
        b'{"nonce": "zz", "pcrs": [0]}',
        b'{"nonce": "0011223344556677", "pcrs": "0"}',
        b"not json",
        b"x" * (MAX_CHALLENGE + 1),
    ],
)
def test_quoter_refuses_malformed_challenges_without_quoting(line: bytes) -> None:
    measurer = _Measurer()
    assert Quoter(measurer, 60).answer(line)["status"] == 400
    assert measurer.quotes == []

"""_rawtpm's response parsing against a TPM that answers wrongly.

A real swtpm answers correctly (tests/integration/test_measure_*.py run every pod start's
commands through _rawtpm against it); a TPM that lies or truncates cannot be made here, so
these feed the parser hand-made responses through a stand-in channel (CONVENTIONS 13).
"""

from __future__ import annotations

import struct

import pytest

from trustd.privileged.measure import _rawtpm
from trustd.privileged.measure.errors import MeasurementError


class Channel:
    def __init__(self, *responses: bytes) -> None:
        self.responses = list(responses)
        self.sent: list[bytes] = []

    def transact(self, command: bytes) -> bytes:
        self.sent.append(command)
        return self.responses.pop(0)

    def close(self) -> None:
        pass


def _response(body: bytes, rc: int = 0, tag: int = 0x8001) -> bytes:
    return struct.pack(">HII", tag, 10 + len(body), rc) + body


def _tpm(*responses: bytes) -> _rawtpm.RawTpm:
    return _rawtpm.RawTpm(Channel(*responses), "swtpm")  # type: ignore[arg-type]


def test_the_clock_is_read_from_its_fields() -> None:
    body = struct.pack(">QQIIB", 1, 2, 7, 3, 1)
    assert _tpm(_response(body)).clock() == _rawtpm.Clock(7, 3)


def test_banks_are_the_ones_selecting_the_pcr() -> None:
    sel = struct.pack(">I", 2) + struct.pack(">HB", 0x000B, 3) + bytes([0, 0x40, 0])
    sel += struct.pack(">HB", 0x0004, 3) + bytes([0, 0, 0])
    body = b"\x00" + struct.pack(">I", 5) + sel
    assert _tpm(_response(body)).banks(14) == ("sha256",)


def test_an_extend_sends_the_password_session_and_each_digest() -> None:
    tpm = _tpm(_response(struct.pack(">IHBH", 0, 0, 1, 0), tag=0x8002))
    tpm.extend(14, {"sha256": b"\x11" * 32})
    sent = tpm._channel.sent[0]  # type: ignore[attr-defined]
    assert struct.unpack(">HII", sent[:10]) == (0x8002, len(sent), 0x182)
    assert sent[10:14] == struct.pack(">I", 14)
    assert sent[14:27] == struct.pack(">IIHBH", 9, 0x40000009, 0, 0, 0)
    assert sent[27:] == struct.pack(">IH", 1, 0x000B) + b"\x11" * 32


@pytest.mark.parametrize(
    "response",
    [
        b"\x80\x01\x00\x00",  # shorter than a header
        struct.pack(">HII", 0x8001, 99, 0) + struct.pack(">QQIIB", 1, 2, 7, 3, 1),  # size lies
        struct.pack(">HII", 0x1234, 27, 0) + struct.pack(">QQIIB", 1, 2, 7, 3, 1),  # bad tag
        _response(b"\x00" * 8),  # fields missing
    ],
)
def test_a_malformed_response_is_refused(response: bytes) -> None:
    with pytest.raises(ValueError, match="TPM"):
        _tpm(response).clock()


def test_a_failing_response_code_is_a_measurement_error() -> None:
    with pytest.raises(MeasurementError, match="0x922"):
        _tpm(_response(b"", rc=0x922)).clock()


def test_a_pcr_value_of_the_wrong_size_or_bank_is_refused() -> None:
    sel = struct.pack(">I", 1) + struct.pack(">HB", 0x000B, 3) + bytes([0, 0x40, 0])
    short = struct.pack(">I", 0) + sel + struct.pack(">IH", 1, 20) + b"\x00" * 20
    with pytest.raises(ValueError, match="unasked"):
        _tpm(_response(short)).pcr_values(14, ("sha256",))
    good = struct.pack(">I", 0) + sel + struct.pack(">IH", 1, 32) + b"\x22" * 32
    assert _tpm(_response(good)).pcr_values(14, ("sha256",)) == {"sha256": b"\x22" * 32}

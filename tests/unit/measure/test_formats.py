"""PCR file and CEL-JSON event log codecs: exact bytes, strict parsing, replay."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustd.privileged.measure import (
    MalformedAttestationFileError,
    canonical_json,
    decode_log,
    decode_pcr_file,
    encode_log,
    encode_pcr_file,
    event_digest,
    replay,
)
from trustd.privileged.measure.eventlog import make_record

VECTOR = Path(__file__).resolve().parents[2] / "vectors/swtpm-quote/quote.pcrs.bin"


def test_canonical_json_contract() -> None:
    obj = {"kind": "image", "data": {"b": [1, "é"], "a": True}}
    assert canonical_json(obj) == '{"data":{"a":true,"b":[1,"é"]},"kind":"image"}'.encode()
    assert event_digest(obj, "sha256") == hashlib.sha256(canonical_json(obj)).digest()
    with pytest.raises(ValueError, match="md5"):  # the verifier's contract refuses it
        event_digest(obj, "md5")


def test_pcr_file_matches_tpm2_tools_bytes() -> None:
    data = VECTOR.read_bytes()
    parsed = decode_pcr_file(data)
    assert parsed.selection == (("sha256", (0, 15)),)
    assert encode_pcr_file(parsed.selection, (parsed.values,)) == data


def test_pcr_file_round_trip_over_two_digest_lists() -> None:
    sel = (("sha256", tuple(range(10))), ("sha1", (23,)))
    chunks = (tuple(bytes([i]) * 32 for i in range(8)), (b"\x08" * 32, b"\x09" * 32, b"\x01" * 20))
    parsed = decode_pcr_file(encode_pcr_file(sel, chunks))
    assert parsed.selection == sel
    assert parsed.value_map()[("sha1", 23)] == b"\x01" * 20


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d[:-1], "digest lists"),
        (lambda d: d[:100], "not a PCR file"),
        (lambda d: b"\x11" + d[1:], "selection count"),
        (lambda d: d[:4] + b"\x99\x00" + d[6:], "unknown hash"),
        (lambda d: d[:136] + b"\x09" + d[137:], "count 9"),
        (lambda d: d[:140] + b"\x14\x00" + d[142:], "a sha256 value of 20 bytes"),
        (lambda d: d[:136] + b"\x01" + d[137:], "1 values for 2 selected"),
    ],
)
def test_malformed_pcr_files_are_errors(mutate: object, message: str) -> None:
    data = encode_pcr_file((("sha256", (0, 15)),), ((b"\0" * 32, b"\1" * 32),))
    with pytest.raises(MalformedAttestationFileError, match=message):
        decode_pcr_file(mutate(data))  # type: ignore[operator]


@given(st.binary(max_size=1500))
def test_arbitrary_pcr_files_never_crash(data: bytes) -> None:
    with contextlib.suppress(MalformedAttestationFileError):
        decode_pcr_file(data)


def _log() -> bytes:
    banks = ("sha1", "sha256")
    records = [make_record(n, 23, {"kind": "e", "data": {"n": n}}, banks) for n in range(3)]
    return encode_log(records)


def test_log_round_trip_and_replay() -> None:
    records = decode_log(_log())
    assert [r.recnum for r in records] == [0, 1, 2]
    value = bytes(32)
    for r in records:
        value = hashlib.sha256(value + event_digest(dict(r.content), "sha256")).digest()
        assert r.digest("sha256") == hashlib.sha256(canonical_json(dict(r.content))).digest()
    assert replay(records, 23, "sha256") == value
    assert replay(records, 16, "sha256") == bytes(32)
    with pytest.raises(ValueError, match="no sha384"):
        replay(records, 23, "sha384")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.__setitem__(1, d[2]), "recnum"),
        (lambda d: d[0].__setitem__("content_type", "systemd"), "content_type"),
        (lambda d: d[0].__setitem__("pcr", 24), "pcr"),
        (lambda d: d[0]["content"]["data"].__setitem__("n", 7), "does not match"),
        (lambda d: d[0]["content"].__setitem__("extra", 7), "exactly kind and data"),
        (lambda d: d[0]["digests"][0].__setitem__("hashAlg", "md5"), "unsupported"),
        (lambda d: d[0]["digests"][0].__setitem__("digest", "AB" * 20), "hex"),
        (lambda d: d[0].__setitem__("extra", 1), "expected keys"),
    ],
)
def test_malformed_logs_are_named(mutate: object, message: str) -> None:
    doc = json.loads(_log())
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(ValueError, match=message):
        decode_log(json.dumps(doc).encode())


def test_digest_check_can_be_left_to_the_verifier() -> None:
    doc = json.loads(_log())
    doc[0]["content"]["data"]["n"] = 7
    record = decode_log(json.dumps(doc).encode(), check_digests=False)[0]
    assert record.content["data"] == {"n": 7}


@given(st.binary(max_size=500))
def test_arbitrary_logs_never_crash(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        decode_log(data)


def test_the_line_form_round_trips_and_is_cel_json() -> None:
    from trustd.privileged.measure.eventlog import decode_lines, encode_line  # noqa: PLC0415
    from trustd.shared.attest.cel import parse_cel  # noqa: PLC0415

    records = decode_log(_log())
    lines = b"".join(encode_line(r) for r in records)
    assert decode_log(lines) == records
    assert decode_lines(b"".join(encode_line(r) for r in records[1:]), 1) == records[1:]
    assert [r.recnum for r in parse_cel(lines).records] == [0, 1, 2]  # the verifier reads it
    with pytest.raises(ValueError, match="record 2: incomplete"):
        decode_log(lines[:-3])
    with pytest.raises(ValueError, match="record 1: recnum"):
        decode_lines(lines, 1)
    assert decode_log(b"") == ()


def test_checkpoint_round_trip_and_a_bad_one_is_set_aside(tmp_path: Path) -> None:
    from trustd.privileged.measure._checkpoint import (  # noqa: PLC0415
        CHECKPOINT,
        advance,
        load_checkpoint,
        make_checkpoint,
        store_checkpoint,
    )

    values: dict[int, dict[str, bytes]] = {}
    records = decode_log(_log())
    for record in records:
        advance(values, record)
    assert values[23]["sha256"] == replay(records, 23, "sha256")
    checkpoint = make_checkpoint((1, 0), 3, 300, (200, b"last line\n"), values)
    store_checkpoint(tmp_path, checkpoint)
    assert (tmp_path / CHECKPOINT).stat().st_mode & 0o777 == 0o600
    assert load_checkpoint(tmp_path) == checkpoint
    assert load_checkpoint(tmp_path).values() == values  # type: ignore[union-attr]
    doc = json.loads((tmp_path / CHECKPOINT).read_bytes())
    for bad in (
        {**doc, "records": -1},
        {**doc, "records": 0},  # records but no bytes, or bytes but no records
        {**doc, "last_offset": 301},
        {**doc, "extra": 1},
        {**doc, "pcrs": [{"pcr": 23, "banks": {"md5": "00" * 16}}]},
        {**doc, "pcrs": [{"pcr": 24, "banks": {}}]},
        {**doc, "pcrs": [doc["pcrs"][0], doc["pcrs"][0]]},
        {**doc, "last_sha256": "AB" * 32},
    ):
        (tmp_path / CHECKPOINT).write_text(json.dumps(bad))
        assert load_checkpoint(tmp_path) is None, bad
    (tmp_path / CHECKPOINT).write_bytes(b"\xff" * 10)
    assert load_checkpoint(tmp_path) is None
    (tmp_path / CHECKPOINT).unlink()
    assert load_checkpoint(tmp_path) is None

"""CEL-JSON: trustd's content format, parsing, replay, and end-to-end bundle verification.

Quotes here come from a software key (``_forge.SoftTpm``) because the unit tier has no TPM.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.attest._forge import SoftTpm, marshal_attest
from trustd.shared.attest import (
    AttestFormatError,
    CelLog,
    HashAlg,
    QuoteBundle,
    QuoteError,
    canonical_json,
    event_digest,
    parse_cel,
    parse_signature,
    pod_starts,
    replay_cel,
    trustd_content,
    trustd_record,
    verify_bundle,
)

NONCE = bytes(range(20))
POD = "6b3e1f0a-0000-4000-8000-00000000beef"
ALGS = (HashAlg.SHA256, HashAlg.SHA384)


def pod_log(pod: str = POD, pcr: int = 16, start: int = 0) -> list[dict[str, Any]]:
    events: list[tuple[str, dict[str, Any]]] = [
        ("stage1", {"pod": pod, "digest": "sha512-" + "a" * 128}),
        ("image", {"pod": pod, "id": "sha512-" + "b" * 128, "signers": ["1F5CA583"]}),
        ("pod-manifest", {"pod": pod, "digest": "sha512-" + "c" * 128}),
        ("isolation", {"pod": pod, "flavor": "container", "caps": ["CAP_NET_BIND_SERVICE"]}),
        ("policy", {"pod": pod, "digest": "sha256-" + "d" * 64}),
    ]
    return [
        trustd_record(start + i, pcr, trustd_content(kind, data), ALGS).to_json()
        for i, (kind, data) in enumerate(events)
    ]


def as_log(records: list[dict[str, object]]) -> CelLog:
    return parse_cel(json.dumps(records).encode())


def test_canonical_json_is_jcs_for_the_subset_trustd_writes() -> None:
    assert canonical_json({"b": 1, "a": [True, None, "x"]}) == b'{"a":[true,null,"x"],"b":1}'
    assert canonical_json({"é": "ü\n\u0001"}) == '{"é":"ü\\n\\u0001"}'.encode()
    # keys sort by UTF-16 code units: U+1F600 (D83D DE00) sorts before U+FF5E
    assert canonical_json({"\uff5e": 1, "\U0001f600": 2}).index("\U0001f600".encode()) == 2


@pytest.mark.parametrize(
    "bad", [1.5, {"a": float("nan")}, 2**53, {1: "x"}, {"a": b"bytes"}, "\ud800"]
)
def test_canonical_json_refuses_what_has_no_single_form(bad: object) -> None:
    with pytest.raises(ValueError, match=r"canonical JSON|not allowed|outside|not a string"):
        canonical_json(bad)


def test_event_digest_is_the_hash_of_canonical_content() -> None:
    content = {"kind": "image", "data": {"pod": POD, "id": "sha512-x"}}
    expected = HashAlg.SHA256.digest(canonical_json(content))
    assert event_digest(content, "sha256") == expected
    assert (
        event_digest(trustd_content("image", {"id": "sha512-x", "pod": POD}), HashAlg.SHA256)
        == expected
    )
    with pytest.raises(ValueError, match="kind"):
        trustd_content("Image!", {})


def test_log_round_trips_through_json_and_json_seq() -> None:
    records = pod_log()
    log = as_log(records)
    assert parse_cel(log.to_bytes()).records == log.records
    seq = "".join("\x1e" + json.dumps(r) + "\n" for r in records).encode()
    assert parse_cel(seq).records == log.records
    lines = "".join(json.dumps(r) + "\n" for r in records).encode()
    assert parse_cel(lines).records == log.records


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r.pop("recnum"), "(record)"),
        (lambda r: r.update(extra=1), "(record)"),
        (lambda r: r.update(recnum=7), "recnum"),
        (lambda r: r.update(pcr=24), "pcr"),
        (lambda r: r.update(digests=[]), "digests"),
        (lambda r: r.update(digests=[{"hashAlg": "md5", "digest": "00"}]), "digests[0].hashAlg"),
        (
            lambda r: r.update(digests=[{"hashAlg": "sha256", "digest": "zz" * 32}]),
            "digests[0].digest",
        ),
        (lambda r: r.update(digests=[{"hashAlg": "sha256", "digest": "00"}]), "digests[0].digest"),
        (lambda r: r.update(content={"kind": "image"}), "content"),
        (lambda r: r.update(content={"kind": "image", "data": [], "x": 1}), "content"),
    ],
)
def test_malformed_record_names_the_field(mutate: object, field: str) -> None:
    records = pod_log()
    mutate(records[0])  # type: ignore[operator]
    with pytest.raises(AttestFormatError) as err:
        as_log(records)
    assert err.value.field == field


@pytest.mark.parametrize(
    "text",
    [b'[{"recnum": 0, "recnum": 0}]', b"[1.5]", b"[NaN]", b"\xff", b"[" * 100000, b"{}"],
)
def test_unreadable_logs_are_a_format_error(text: bytes) -> None:
    with pytest.raises(AttestFormatError):
        parse_cel(text)


def test_edited_content_fails_event_digest() -> None:
    records = pod_log()
    records[1]["content"]["data"]["id"] = "sha512-" + "e" * 128
    with pytest.raises(QuoteError) as err:
        replay_cel(as_log(records))
    assert err.value.check == "event-digest"
    assert "record 1" in err.value.message


def _bundle(
    tmp_path: Path, records: list[dict[str, object]], pcrs: tuple[int, ...] = (16,)
) -> tuple[SoftTpm, Path]:
    tpm = SoftTpm()
    return tpm, tpm.bundle(tmp_path / "bundle", as_log(records), NONCE, pcrs)


def test_bundle_verifies_and_lists_the_pod_start(tmp_path: Path) -> None:
    tpm, directory = _bundle(tmp_path, pod_log(), (0, 16))
    verified = verify_bundle(QuoteBundle.load(directory), tpm.ak(), NONCE)
    starts = pod_starts(verified)
    assert [s["pod"] for s in starts] == [POD]
    kinds = [e["kind"] for e in starts[0]["events"]]
    assert kinds == ["stage1", "image", "pod-manifest", "isolation", "policy"]
    json.dumps(starts)


def test_records_in_unquoted_pcrs_are_not_reported(tmp_path: Path) -> None:
    records = pod_log() + pod_log("other-pod", pcr=17, start=5)
    tpm, directory = _bundle(tmp_path, records, (16,))
    starts = pod_starts(verify_bundle(QuoteBundle.load(directory), tpm.ak(), NONCE))
    assert [s["pod"] for s in starts] == [POD]


def test_event_removed_from_the_log_fails_replay(tmp_path: Path) -> None:
    records = pod_log()
    tpm, directory = _bundle(tmp_path, records)
    shortened = CelLog(as_log(records).records[:-1])
    (directory / "eventlog.json").write_bytes(shortened.to_bytes())
    with pytest.raises(QuoteError) as err:
        verify_bundle(QuoteBundle.load(directory), tpm.ak(), NONCE)
    assert err.value.check == "replay"


def test_event_added_to_the_log_fails_replay(tmp_path: Path) -> None:
    records = pod_log()
    tpm, directory = _bundle(tmp_path, records)
    extra = trustd_record(5, 16, trustd_content("image", {"pod": POD, "id": "evil"}), ALGS)
    longer = CelLog((*as_log(records).records, extra))
    (directory / "eventlog.json").write_bytes(longer.to_bytes())
    with pytest.raises(QuoteError) as err:
        verify_bundle(QuoteBundle.load(directory), tpm.ak(), NONCE)
    assert err.value.check == "replay"


def test_event_removed_from_the_middle_is_caught_by_its_recnum(tmp_path: Path) -> None:
    records = pod_log()
    del records[2]
    with pytest.raises(AttestFormatError, match="recnum"):
        as_log(records)


def test_quoted_pcr_the_log_never_touches_must_be_zero(tmp_path: Path) -> None:
    tpm, directory = _bundle(tmp_path, pod_log())
    (directory / "eventlog.json").write_bytes(b"[]")
    with pytest.raises(QuoteError) as err:
        verify_bundle(QuoteBundle.load(directory), tpm.ak(), NONCE)
    assert err.value.check == "replay"
    assert "PCR 16" in err.value.message


@pytest.mark.parametrize(
    ("changes", "check"),
    [({"magic": 0xFF544348}, "magic"), ({"attest_type": 0x8017}, "type")],
)
def test_signed_but_not_a_tpm_quote_fails_magic_or_type(
    tmp_path: Path, changes: dict[str, Any], check: str
) -> None:
    tpm, directory = _bundle(tmp_path, pod_log())
    bundle = QuoteBundle.load(directory)
    attest = marshal_attest(bundle.pcrs, NONCE, **changes)
    forged = dataclasses.replace(bundle, attest=attest, signature=parse_signature(tpm.sign(attest)))
    with pytest.raises(QuoteError) as err:
        verify_bundle(forged, tpm.ak(), NONCE)
    assert err.value.check == check

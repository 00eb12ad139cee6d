"""The event log's checkpoint against a real swtpm: a pod start does O(1) work in the log's
length, a crash's leftovers roll forward, and a truncated log, a foreign extend or a reset still
stop the run (issue #11 item 4, ADR 0007)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_measure_swtpm import measurer, pcrread, pytestmark, tools_env
from trustd.privileged.measure import (
    MeasurementError,
    _checkpoint,
    _extend,
    decode_log,
    eventlog,
    replay,
    stop_embedded,
)
from trustd.privileged.measure._checkpoint import CHECKPOINT, load_checkpoint
from trustd.privileged.measure.eventlog import encode_line, encode_log, make_record
from trustd.shared.attest.cel import parse_cel, replay_cel
from trustd.shared.attest.model import HashAlg
from trustd.shared.errors import LocalStateError

__all__ = ["pytestmark"]
BANKS = ("sha1", "sha256", "sha384", "sha512")  # what the swtpm allocates


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    stop_embedded(tmp_path)


def pod(n: int) -> list[dict[str, object]]:
    """Five events, as a pod start of one app measures (same sizes for every n)."""
    kinds = ("stage1", "image", "pod-manifest", "isolation", "policy")
    return [{"kind": k, "data": {"pod": f"pod-{n:06d}"}} for k in kinds]


def log_of(data_dir: Path) -> Path:
    return data_dir / "tpm" / "eventlog.json"


def assert_consistent(data_dir: Path, tmp: Path) -> None:
    """Log, checkpoint and TPM agree, and the verifier's own replay agrees with them."""
    records = decode_log(log_of(data_dir).read_bytes())
    checkpoint = load_checkpoint(data_dir / "tpm")
    assert checkpoint is not None
    assert checkpoint.records == len(records)
    assert checkpoint.size == log_of(data_dir).stat().st_size
    cel = replay_cel(parse_cel(log_of(data_dir).read_bytes()))
    for bank in BANKS:
        tpm = pcrread(data_dir, f"{bank}:23", tmp)
        assert replay(records, 23, bank) == tpm == checkpoint.values()[23][bank]
        assert cel[HashAlg.from_label(bank)][23] == tpm  # type: ignore[index]


def crash_append(data_dir: Path, contents: list[dict[str, object]]) -> list[str]:
    """Returns each record's digests as ``tpm2_pcrextend`` takes them (``sha1=..,sha256=..``)."""
    """What a trustd killed between its append and its extends leaves: lines the TPM lacks."""
    n = len(decode_log(log_of(data_dir).read_bytes()))
    records = [make_record(n + i, 23, c, BANKS) for i, c in enumerate(contents)]
    with log_of(data_dir).open("ab") as f:
        f.write(b"".join(encode_line(r) for r in records))
    return [",".join(f"{a}={d}" for a, d in r.digests) for r in records]


def foreign_extend(data_dir: Path, spec: str) -> None:
    subprocess.run(
        ["tpm2_pcrextend", spec], env=tools_env(data_dir), check=True, capture_output=True
    )


def test_the_log_is_appended_one_record_per_line_with_a_root_only_checkpoint(
    data_dir: Path, tmp_path: Path
) -> None:
    m = measurer(data_dir)
    m.extend_all(23, pod(1))
    first = log_of(data_dir).read_bytes()
    m.extend_all(23, pod(2))
    after = log_of(data_dir).read_bytes()
    assert after.startswith(first)  # appended, never rewritten
    assert [json.loads(line)["recnum"] for line in after.splitlines()] == list(range(11))
    st = (data_dir / "tpm" / CHECKPOINT).stat()
    assert st.st_mode & 0o777 == 0o600 and st.st_uid == os.geteuid()
    assert_consistent(data_dir, tmp_path)


def test_a_crash_between_append_and_extend_rolls_forward(data_dir: Path, tmp_path: Path) -> None:
    m = measurer(data_dir)
    m.extend_all(23, pod(1))
    crash_append(data_dir, pod(2))  # five records logged, none extended
    records = m.extend_all(23, pod(3))
    assert [r.recnum for r in records] == list(range(11, 16))
    assert_consistent(data_dir, tmp_path)


def test_a_crash_after_some_extends_rolls_forward_only_the_rest(
    data_dir: Path, tmp_path: Path
) -> None:
    m = measurer(data_dir)
    m.extend_all(23, pod(1))
    digests = crash_append(data_dir, pod(2))
    for digest in digests[:3]:  # the crash came after three of the five extends
        foreign_extend(data_dir, f"23:{digest}")
    m.extend_all(23, pod(3))
    assert_consistent(data_dir, tmp_path)


def test_a_tail_one_bank_does_not_explain_is_not_rolled_forward(data_dir: Path) -> None:
    m = measurer(data_dir)
    m.extend_all(23, pod(1))
    digests = crash_append(data_dir, pod(2))
    sha256 = digests[0].split(",")[1]
    foreign_extend(data_dir, f"23:{sha256}")  # sha256 follows the log, the other banks do not
    with pytest.raises(MeasurementError, match="another program extended or reset"):
        m.extend_all(23, pod(3))


def test_a_crash_after_every_extend_needs_no_roll_forward(data_dir: Path, tmp_path: Path) -> None:
    m = measurer(data_dir)
    m.extend_all(23, pod(1))
    before = (data_dir / "tpm" / CHECKPOINT).read_bytes()
    m.extend_all(23, pod(2))
    (data_dir / "tpm" / CHECKPOINT).write_bytes(before)  # killed before the checkpoint
    m.extend_all(23, pod(3))
    assert_consistent(data_dir, tmp_path)


def test_a_torn_append_is_cut_back_and_never_extended(data_dir: Path, tmp_path: Path) -> None:
    m = measurer(data_dir)
    m.extend_all(23, pod(1))
    crash_append(data_dir, pod(2)[:2])
    with log_of(data_dir).open("ab") as f:
        f.write(b'{"recnum": 8, "pcr": 23, "con')  # the write(2) stopped here
    m.extend_all(23, pod(3))
    assert b'"con\n' not in log_of(data_dir).read_bytes()
    assert_consistent(data_dir, tmp_path)


def test_a_missing_checkpoint_costs_one_full_replay(data_dir: Path, tmp_path: Path) -> None:
    m = measurer(data_dir)
    m.extend_all(23, pod(1))
    (data_dir / "tpm" / CHECKPOINT).unlink()
    m.extend_all(23, pod(2))
    assert_consistent(data_dir, tmp_path)
    (data_dir / "tpm" / CHECKPOINT).write_bytes(b'{"version": 1, "records": "many"}')
    m.extend_all(23, pod(3))  # an undecodable checkpoint is set aside the same way
    assert_consistent(data_dir, tmp_path)


def test_an_array_log_of_an_older_trustd_is_converted_once(data_dir: Path, tmp_path: Path) -> None:
    m = measurer(data_dir)
    m.extend_all(23, pod(1))
    records = decode_log(log_of(data_dir).read_bytes())
    log_of(data_dir).write_bytes(encode_log(records))
    (data_dir / "tpm" / CHECKPOINT).unlink()
    m.extend_all(23, pod(2))
    assert not log_of(data_dir).read_bytes().startswith(b"[")
    assert_consistent(data_dir, tmp_path)


def test_a_truncated_log_stops_measurement(data_dir: Path) -> None:
    m = measurer(data_dir)
    m.extend_all(23, pod(1))
    m.extend_all(23, pod(2))
    lines = log_of(data_dir).read_bytes().splitlines(keepends=True)
    log_of(data_dir).write_bytes(b"".join(lines[:-1]))  # the last record removed
    with pytest.raises(MeasurementError, match="another program extended or reset"):
        m.extend_all(23, pod(3))
    assert len(log_of(data_dir).read_bytes().splitlines()) == 10  # nothing appended


def test_a_rewritten_last_record_is_not_trusted_from_the_checkpoint(data_dir: Path) -> None:
    m = measurer(data_dir)
    m.extend_all(23, pod(1))
    data = log_of(data_dir).read_bytes()
    log_of(data_dir).write_bytes(data.replace(b"pod-000001", b"pod-000009"))  # same size
    with pytest.raises(LocalStateError, match="digest does not match"):
        m.extend_all(23, pod(2))  # full replay: the records' digests are checked


def test_a_foreign_extend_after_a_crash_is_not_rolled_forward(data_dir: Path) -> None:
    m = measurer(data_dir)
    m.extend_all(23, pod(1))
    crash_append(data_dir, pod(2))
    foreign_extend(data_dir, "23:sha256=" + "00" * 32)
    with pytest.raises(MeasurementError, match="another program extended or reset"):
        m.extend_all(23, pod(3))


def test_a_reset_pcr_stops_measurement(data_dir: Path) -> None:
    m = measurer(data_dir)
    m.extend_all(23, pod(1))
    subprocess.run(
        ["tpm2_pcrreset", "23"], env=tools_env(data_dir), check=True, capture_output=True
    )
    with pytest.raises(MeasurementError, match="another program extended or reset"):
        measurer(data_dir).extend_all(23, pod(2))


class Work:
    """What one pod start reads and decodes: os.pread calls and bytes, records decoded,
    records replayed. Counted, not timed (CONVENTIONS 14b)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.preads = self.bytes = self.decoded = self.replayed = 0
        real_pread, real_decode = os.pread, eventlog._decode_record
        real_advance = _checkpoint.advance

        def pread(fd: int, n: int, offset: int) -> bytes:
            data = real_pread(fd, n, offset)
            self.preads, self.bytes = self.preads + 1, self.bytes + len(data)
            return data

        def decode(raw: object, n: int, check: bool) -> eventlog.EventRecord:
            self.decoded += 1
            return real_decode(raw, n, check)

        def advance(values: object, record: eventlog.EventRecord) -> None:
            self.replayed += 1
            real_advance(values, record)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "pread", pread)
        monkeypatch.setattr(eventlog, "_decode_record", decode)
        monkeypatch.setattr(_extend, "advance", advance)


def test_a_pod_start_does_the_same_work_after_10_and_1000_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work: dict[int, Work] = {}
    try:
        for earlier in (10, 1000):
            data_dir = tmp_path / str(earlier)
            m = measurer(data_dir)
            events = [e for n in range(earlier // 5) for e in pod(n)]
            for start in range(0, len(events) - 1, 250):  # the epoch record makes it earlier + 1
                m.extend_all(23, events[start : start + 250])
            with monkeypatch.context() as patch:
                work[earlier] = Work(patch)
                m.extend_all(23, pod(999_999))
            assert_consistent(data_dir, tmp_path)
    finally:
        for earlier in work:
            stop_embedded(tmp_path / str(earlier))
    small, large = work[10], work[1000]
    assert large.decoded == small.decoded == 0
    assert large.replayed == small.replayed == 5  # the new records only
    assert large.preads == small.preads
    # The one line read back (the checkpoint's last) differs only in its recnum's digits.
    assert 0 < small.bytes <= large.bytes <= small.bytes + 8

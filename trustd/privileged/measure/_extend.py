"""One pod start's extends, under the state directory's lock, in O(1) of the log's length.

Read the checkpoint (:mod:`._checkpoint`) and check it against the log (size, last line) and the
TPM (the PCR's value); begin a new epoch if the TPM was reset; complete extends a crash left
undone ("roll forward"); append every new record with one ``write(2)`` and one ``fsync``; extend
them; write the checkpoint. A checkpoint that does not fit the log costs one full replay; records
appended after the checkpoint (a crash) are decoded and replayed, nothing before them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from trustd.privileged.measure._canon import DIGEST_SIZES
from trustd.privileged.measure._checkpoint import (
    Checkpoint,
    Values,
    advance,
    expected,
    load_checkpoint,
    make_checkpoint,
    store_checkpoint,
)
from trustd.privileged.measure.backend import Target
from trustd.privileged.measure.errors import MeasurementError
from trustd.privileged.measure.eventlog import (
    MAX_LOG_BYTES,
    EventRecord,
    decode_lines,
    decode_log,
    encode_line,
    make_record,
    store_log,
)
from trustd.shared._dataclass import frozen
from trustd.shared.errors import LocalStateError

if TYPE_CHECKING:
    from trustd.privileged.measure import _esys, _rawtpm

EVENTLOG: Final = "eventlog.json"
EPOCH_TYPE: Final = "tpm-epoch"
MAX_LINE: Final = 1 << 20
_FLAGS: Final = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


@frozen
class LogState:
    """Where the log stands. ``tail`` are records no checkpoint has confirmed against the TPM
    (a crash may have left them unextended); ``base`` is the PCR values before them."""

    epoch: tuple[int, int] | None  # (resetCount, restartCount) of record 0; None: empty log
    records: int
    size: int
    last: tuple[int, bytes]  # offset and bytes of the last line
    values: Values
    tail: tuple[EventRecord, ...]
    base: Values  # the values before ``tail``: ``values`` itself when the tail is empty


EMPTY: Final = LogState(None, 0, 0, (0, b""), {}, (), {})


def pread_exact(fd: int, offset: int, length: int) -> bytes:
    chunks = []
    while length > 0:
        chunk = os.pread(fd, min(length, 1 << 20), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset, length = offset + len(chunk), length - len(chunk)
    return b"".join(chunks)


def _epoch_of(record: EventRecord, where: Path) -> tuple[int, int]:
    content = record.content
    data = content.get("data")
    if content.get("kind") != EPOCH_TYPE or not isinstance(data, Mapping):
        raise LocalStateError(
            f"event log {where}: record 0 is not a {EPOCH_TYPE} record",
            hint=f"move {where} aside; it was not written by trustd",
        )
    reset, restart = data.get("tpm_reset_count"), data.get("tpm_restart_count")
    if not isinstance(reset, int) or not isinstance(restart, int):
        raise LocalStateError(f"event log {where}: record 0 has no TPM reset/restart counts")
    return reset, restart


class Extender:
    """One session's extends: ``extend_all`` once, with the lock held and the TPM open."""

    def __init__(
        self, tpm: _esys.Tpm | _rawtpm.RawTpm, directory: Path, target: Target | None
    ) -> None:
        self.tpm = tpm
        self.directory = directory
        self.log_path = directory / EVENTLOG
        self.target = target
        self._archived: str | None = None

    def extend_all(
        self, pcr: int, contents: Sequence[Mapping[str, object]], done: list[EventRecord]
    ) -> None:
        """Log and extend ``contents`` in order; each record is put in ``done`` once the TPM
        holds it (so a caller in best-effort mode knows which ones were measured)."""
        banks = tuple(b for b in self.tpm.banks(pcr) if b in DIGEST_SIZES)
        if "sha256" not in banks:
            raise MeasurementError(
                f"the TPM has no sha256 bank allocated for PCR {pcr}",
                backend=self.tpm.backend,
                hint="allocate it: tpm2_pcrallocate sha256:all (takes effect after a reset)",
            )
        clock = self.tpm.clock()
        actual = self.tpm.pcr_values(pcr, banks)
        checkpoint = load_checkpoint(self.directory)
        with self._open() as fd:
            state = self.read_state(fd, checkpoint)
        if state.epoch is not None and not _same_epoch(state.epoch, clock, actual):
            self._archive(state.epoch)
            state = EMPTY
        epoch = state.epoch or (clock.reset_count, clock.restart_count)  # as record 0 says
        if state.epoch is None:  # a new epoch: a crash in its first start rolls forward
            fresh = make_checkpoint(epoch, 0, 0, (0, b""), {})
            if checkpoint != fresh:
                store_checkpoint(self.directory, fresh)
        self._reconcile(state, pcr, actual)
        new: list[Mapping[str, object]] = []
        if state.epoch is None:
            new.append(self._epoch_content(banks, clock))
        new += contents
        records = [make_record(state.records + i, pcr, c, banks) for i, c in enumerate(new)]
        with self._open() as fd:
            self._append_and_extend(fd, state, epoch, records, done, own=len(new) - len(contents))

    # -- reading -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _open(self) -> Iterator[int]:
        fd = os.open(self.log_path, _FLAGS, 0o600)
        try:
            yield fd
        finally:
            os.close(fd)

    def read_state(self, fd: int, checkpoint: Checkpoint | None) -> LogState:
        """The log's state from the checkpoint when it fits (reading only what follows it),
        else from one full replay."""
        size = os.fstat(fd).st_size
        if size > MAX_LOG_BYTES:
            raise LocalStateError(
                f"event log {self.log_path} is larger than {MAX_LOG_BYTES} bytes",
                hint="it is archived at the next TPM reset; reboot, or move it aside",
            )
        line = None if checkpoint is None else self._fits(fd, checkpoint, size)
        if checkpoint is not None and line is not None:
            return self._after(fd, checkpoint, line, size)
        data = pread_exact(fd, 0, size)
        records = self._decode(lambda: decode_log(data))
        if data.lstrip()[:1] == b"[":  # an array log of an older trustd: convert it once
            store_log(self.log_path, records)
            with self._open() as new_fd:
                return self.read_state(new_fd, None)
        values: Values = {}
        for record in records[:-1]:
            advance(values, record)
        base = {p: dict(v) for p, v in values.items()}
        if records:
            advance(values, records[-1])
        # Without a checkpoint only the last record may be unconfirmed (as an older trustd
        # left it); a checkpoint the log contradicts (truncated, rewritten) allows none.
        tail = records[-1:] if checkpoint is None else ()
        cut = data.rfind(b"\n", 0, max(len(data) - 1, 0)) + 1
        return LogState(
            _epoch_of(records[0], self.log_path) if records else None,
            len(records),
            size,
            (cut, data[cut:]),
            values,
            tail,
            base if tail else values,
        )

    def _fits(self, fd: int, checkpoint: Checkpoint, size: int) -> bytes | None:
        """The checkpoint's last line if the log still begins with what it covers (same last
        line at the same offset), else None."""
        if checkpoint.size > size:
            return None
        if checkpoint.records == 0:
            return b""
        length = checkpoint.size - checkpoint.last_offset
        if not 0 < length <= MAX_LINE:
            return None
        last = pread_exact(fd, checkpoint.last_offset, length)
        good = last.endswith(b"\n") and hashlib.sha256(last).hexdigest() == checkpoint.last_sha256
        return last if good else None

    def _after(self, fd: int, checkpoint: Checkpoint, line: bytes, size: int) -> LogState:
        values = checkpoint.values()
        last = (checkpoint.last_offset, line)
        epoch = (checkpoint.tpm_reset_count, checkpoint.tpm_restart_count)
        data = pread_exact(fd, checkpoint.size, size - checkpoint.size)  # a crash's leftovers
        if not data.endswith(b"\n") and data:
            # A torn append: its records were never extended (extends follow the fsync).
            keep = data.rfind(b"\n") + 1
            os.ftruncate(fd, checkpoint.size + keep)
            os.fsync(fd)
            data, size = data[:keep], checkpoint.size + keep
        if not data:
            count = checkpoint.records
            return LogState(epoch if count else None, count, size, last, values, (), values)
        tail = self._decode(lambda: decode_lines(data, checkpoint.records))
        if checkpoint.records == 0:
            epoch = _epoch_of(tail[0], self.log_path)
        base = {p: dict(v) for p, v in values.items()}
        for record in tail:
            advance(values, record)
        cut = data.rfind(b"\n", 0, len(data) - 1) + 1
        last = (checkpoint.size + cut, data[cut:])
        return LogState(epoch, checkpoint.records + len(tail), size, last, values, tail, base)

    def _decode(self, decode: Callable[[], tuple[EventRecord, ...]]) -> tuple[EventRecord, ...]:
        try:
            return decode()
        except ValueError as exc:
            raise LocalStateError(
                f"event log {self.log_path}: {exc}",
                hint="the log no longer matches the TPM; inspect it, then move it aside",
            ) from exc

    # -- epochs ------------------------------------------------------------------------------

    def _archive(self, epoch: tuple[int, int]) -> None:
        archive = self.log_path.with_name(f"eventlog.{epoch[0]}-{epoch[1]}.json")
        self.log_path.replace(archive)
        self._archived = archive.name

    def _epoch_content(self, banks: tuple[str, ...], clock: _rawtpm.Clock) -> dict[str, object]:
        data: dict[str, object] = {
            "log_version": 1,
            "backend": self.tpm.backend,
            "tpm_reset_count": clock.reset_count,
            "tpm_restart_count": clock.restart_count,
            "banks": list(banks),
        }
        if self.target is not None:
            data["backend_reason"] = self.target.reason
            if self.target.swtpm is not None:
                data["swtpm_starts"] = self.target.swtpm.starts
                data["swtpm_started_at"] = self.target.swtpm.started_at
        if self._archived is not None:
            data["previous_log"] = self._archived
        return {"kind": EPOCH_TYPE, "data": data}

    # -- the TPM must hold what the log says ---------------------------------------------------

    def _reconcile(self, state: LogState, pcr: int, actual: Mapping[str, bytes]) -> None:
        """Compare every PCR the session and the unconfirmed tail touch with the TPM; extend
        the tail records a crash left undone; anything else is a foreign extend or reset."""
        for p in sorted({pcr} | {r.pcr for r in state.tail}):
            have = actual if p == pcr else self.tpm.pcr_values(p, self._banks(p))
            if _holds(state.values, p, have):
                continue
            pending = _undone(state, p, have)
            if pending is None:
                raise self._mismatch(state, p, have)
            for record in pending:
                self.tpm.extend(p, {a: bytes.fromhex(d) for a, d in record.digests})

    def _banks(self, pcr: int) -> tuple[str, ...]:
        return tuple(b for b in self.tpm.banks(pcr) if b in DIGEST_SIZES)

    def _mismatch(self, state: LogState, pcr: int, have: Mapping[str, bytes]) -> MeasurementError:
        value = expected(state.values, pcr, "sha256")
        says = value.hex() if value is not None else "nothing (a record has no sha256 digest)"
        holds = have["sha256"].hex() if "sha256" in have else "no sha256 bank"
        return MeasurementError(
            f"PCR {pcr} (sha256) holds {holds} but the event log "
            f"{self.log_path} replays to {says}: another program extended or reset this PCR, "
            "so trustd's log can no longer explain it",
            backend=self.tpm.backend,
            hint="measure into a PCR nobody else uses (see docs/adr/0007-measurement-pcr.md);"
            " the log is valid again after the next TPM reset",
        )

    # -- writing -----------------------------------------------------------------------------

    def _append_and_extend(
        self,
        fd: int,
        state: LogState,
        epoch: tuple[int, int],
        records: Sequence[EventRecord],
        done: list[EventRecord],
        *,
        own: int,
    ) -> None:
        """``own`` leading records are trustd's (the epoch record), not the caller's."""
        lines = [encode_line(r) for r in records]
        blob = b"".join(lines)
        start = os.fstat(fd).st_size
        if start != state.size:
            raise LocalStateError(f"event log {self.log_path} changed while it was locked")
        try:
            written = os.write(fd, blob)
            if written != len(blob):
                raise LocalStateError(f"event log {self.log_path}: short write")  # noqa: TRY301
            os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise
        values = {p: dict(v) for p, v in state.values.items()}
        count, end, last = state.records, start, state.last
        try:
            for record, line in zip(records, lines, strict=True):
                self.tpm.extend(record.pcr, {a: bytes.fromhex(d) for a, d in record.digests})
                advance(values, record)
                count, end, last = count + 1, end + len(line), (end, line)
                if count - state.records > own:
                    done.append(dataclasses.replace(record, backend=self.tpm.backend))
        except BaseException:
            with contextlib.suppress(OSError):  # the records the TPM does not hold go again
                os.ftruncate(fd, end)
                os.fsync(fd)
                if count > state.records:
                    store_checkpoint(
                        self.directory, make_checkpoint(epoch, count, end, last, values)
                    )
            raise
        store_checkpoint(self.directory, make_checkpoint(epoch, count, end, last, values))


def _same_epoch(epoch: tuple[int, int], clock: _rawtpm.Clock, actual: Mapping[str, bytes]) -> bool:
    """The log belongs to this TPM boot (a restart that kept the PCRs, e.g. resume, does)."""
    zero = all(v == bytes(len(v)) for v in actual.values())
    return epoch[0] == clock.reset_count and (epoch[1] == clock.restart_count or not zero)


def _holds(values: Values, pcr: int, have: Mapping[str, bytes]) -> bool:
    return all(expected(values, pcr, bank) == value for bank, value in have.items())


def _undone(state: LogState, pcr: int, have: Mapping[str, bytes]) -> list[EventRecord] | None:
    """The tail records on ``pcr`` the TPM does not hold yet, if it holds a prefix of them."""
    values = {p: dict(v) for p, v in state.base.items()}
    on_pcr = [r for r in state.tail if r.pcr == pcr]
    for i in range(len(on_pcr) + 1):
        if _holds(values, pcr, have):
            return on_pcr[i:]
        if i < len(on_pcr):
            advance(values, on_pcr[i])
    return None

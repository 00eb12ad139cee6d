"""Measure pod starts into a TPM PCR, keep the CEL-JSON event log, quote.

Every operation holds ``<data-dir>/tpm/lock``, opens one TPM connection and closes it. Before
each pod start's extends the TPM is compared with what the log replays to, kept in a checkpoint
(a PCR someone else extended or reset stops the run). The records are appended to the log
first, then extended: a crash between the two leaves a log ahead of the TPM, which the next
start completes ("roll forward"). See :mod:`._extend`.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from trustd.privileged.measure import _aksecret, _rawtpm
from trustd.privileged.measure._canon import check_event
from trustd.privileged.measure._extend import EPOCH_TYPE, EVENTLOG, Extender
from trustd.privileged.measure._statedir import ensure_private_dir, locked, tpm_dir
from trustd.privileged.measure.backend import (
    DEVICE,
    BackendStatus,
    Target,
    choose_backend,
    resolve_locked,
    status_of,
)
from trustd.privileged.measure.errors import MeasurementError
from trustd.privileged.measure.eventlog import EventRecord, load_log, make_record
from trustd.shared._fsutil import atomic_write, read_capped
from trustd.shared.errors import LocalStateError, TrustdError, UserError

if TYPE_CHECKING:  # tpm2-pytss is loaded by the operations that need ESAPI, not by extends
    from trustd.privileged.measure import _esys
    from trustd.privileged.measure.bundle import QuoteBundle

DEFAULT_PCR: Final = 23
# The embedded swtpm has no boot chain: every PCR is free, so trustd takes one that cannot be
# reset (0-15 are not resettable; 16 and 23 are, from locality 0). 14 is shim's on hardware.
EMBEDDED_PCR: Final = 14
# 16 (debug) and 23 (application support) are the PC Client PCRs locality 0 may extend that
# no boot component claims; 8, 9 and 14 only on machines without grub / shim. See ADR 0007.
ALLOWED_PCRS: Final = frozenset({8, 9, 14, 16, 23})
RESETTABLE_PCRS: Final = frozenset({16, 23})


def default_pcr(kind: str) -> int:
    """The PCR measured into when ``measure.json`` names none: a non-resettable one where the
    platform surely leaves it free (the embedded swtpm), else 23 (ADR 0007)."""
    return EMBEDDED_PCR if kind == "swtpm" else DEFAULT_PCR


AK_PIN: Final = "ak.pub.pem"
__all__ = ["ALLOWED_PCRS", "DEFAULT_PCR", "EPOCH_TYPE", "EVENTLOG", "Measurer", "Mode"]
Mode = Literal["strict", "best-effort"]


def _check_pcr(pcr: int) -> int:
    if isinstance(pcr, bool) or not isinstance(pcr, int) or pcr not in ALLOWED_PCRS:
        raise UserError(
            f"PCR {pcr!r} may not be used for measurement",
            hint=f"choose one of {sorted(ALLOWED_PCRS)} (0-7 firmware, 10 IMA, 11-13 and 15 "
            "systemd, 17-22 need a higher locality); see docs/adr/0007-measurement-pcr.md",
        )
    return pcr


class Measurer:
    """Measures into one TPM for the length of a run; a dead TPM is never silently replaced.

    ``pcr`` None: :func:`default_pcr` of the chosen backend.
    The backend is resolved (and the embedded swtpm started if needed) on first use; the TPM's
    boot epoch seen then is pinned, so a TPM that restarts mid-run fails the next operation.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        pcr: int | None = None,
        mode: Mode = "strict",
        tcti: str | None = None,
        env: Mapping[str, str] | None = None,
        device: Path = DEVICE,
    ) -> None:
        if mode not in ("strict", "best-effort"):
            raise UserError(f"measurement mode {mode!r} is not strict or best-effort")
        self._choice = choose_backend(tcti=tcti, env=env, device=device)
        self.pcr = _check_pcr(default_pcr(self._choice.kind) if pcr is None else pcr)
        self.mode: Mode = mode
        self._data_dir = data_dir
        self._target: Target | None = None
        self._epoch: _rawtpm.Clock | None = None

    @property
    def backend(self) -> str:
        return self._choice.kind

    @property
    def target(self) -> Target | None:
        """The resolved backend (None before the first operation)."""
        return self._target

    def status(self) -> BackendStatus:
        return status_of(self._choice, self._data_dir)

    @contextlib.contextmanager
    def _session(self) -> Iterator[tuple[_esys.Tpm, Path]]:
        with self._any_session(raw=False) as (tpm, directory):
            yield tpm, directory

    @contextlib.contextmanager
    def _any_session(self, *, raw: bool) -> Iterator[tuple[Any, Path]]:
        """A locked TPM session; with ``raw``, over :mod:`._rawtpm` where it reaches the
        target (the embedded swtpm, a device), which has only what extends need."""
        directory = ensure_private_dir(tpm_dir(self._data_dir))
        with locked(directory):
            if self._target is None:
                self._target = resolve_locked(self._choice, directory)
            target = self._target
            secret = _aksecret.load_or_create(directory)
            sock, device = _rawtpm.raw_channel(target.kind, target.tcti, target.socket_dir)
            if raw and (sock or device):
                opened: Any = _rawtpm.connect(
                    target.tcti, target.kind, socket_dir=sock, device=device
                )
            else:
                from trustd.privileged.measure import _esys  # noqa: PLC0415

                opened = _esys.connect(
                    target.tcti, target.kind, socket_dir=target.socket_dir, ak_secret=secret
                )
            with opened as tpm:
                clock = tpm.clock()
                if self._epoch is None:
                    self._epoch = clock
                elif clock != self._epoch:
                    raise MeasurementError(
                        f"the TPM restarted during this run (resetCount {self._epoch.reset_count}"
                        f" -> {clock.reset_count}, restartCount {self._epoch.restart_count} -> "
                        f"{clock.restart_count}); its PCRs no longer hold this run's events",
                        backend=tpm.backend,
                        hint="start the pod again; the next run opens a new event-log epoch",
                    )
                yield tpm, directory

    # -- measurement -------------------------------------------------------------------------

    def extend(self, pcr: int, content: Mapping[str, object]) -> EventRecord:
        """Extend ``pcr`` in every allocated bank with the digests of ``content``; log it.

        Raises :class:`MeasurementError` on any TPM failure, unless the mode is best-effort:
        then the returned record has ``measured=False`` and the reason, and nothing is logged.
        """
        _check_pcr(pcr)
        try:
            check_event(content)
        except (ValueError, TrustdError) as exc:
            raise UserError(f"event content: {exc}") from exc
        return self.extend_all(pcr, [content])[0]

    def extend_all(self, pcr: int, contents: Sequence[Mapping[str, object]]) -> list[EventRecord]:
        """Extend several events in one TPM session (one connect, one epoch check).

        Same guarantees as :meth:`extend` for each event; in best-effort mode a failure marks
        that event and every later one as not measured.
        """
        _check_pcr(pcr)
        for content in contents:
            try:
                check_event(content)
            except (ValueError, TrustdError) as exc:
                raise UserError(f"event content: {exc}") from exc
        records: list[EventRecord] = []
        try:
            with self._any_session(raw=True) as (tpm, directory):
                Extender(tpm, directory, self._target).extend_all(pcr, contents, records)
        except MeasurementError as exc:
            if self.mode == "strict":
                raise
            for content in contents[len(records) :]:
                unmeasured = make_record(None, pcr, content, ("sha256",))
                records.append(
                    EventRecord(
                        None,
                        pcr,
                        unmeasured.digests,
                        unmeasured.content_json,
                        measured=False,
                        backend=exc.backend,
                        reason=exc.message,
                    )
                )
        return records

    # -- attestation -------------------------------------------------------------------------

    def ak_public_pem(self) -> bytes:
        """The AK's public key (PEM); pinned in ``<data-dir>/tpm/ak.pub.pem`` on first use."""
        with self._session() as (tpm, directory):
            return _pinned_ak(tpm, directory, tpm.ak_public_pem())

    def identity(self) -> tuple[_esys.Endorsement, bytes, bytes]:
        """The EK (and its NV certificate) and the pinned AK: (endorsement, AK TPM2B_PUBLIC,
        AK PEM), what a verifier's enrolment challenge is made for (issue #11)."""
        with self._session() as (tpm, directory):
            pem = _pinned_ak(tpm, directory, tpm.ak_public_pem())
            return tpm.endorsement(), tpm.ak_public_area(), pem

    def activate(self, id_object: bytes, encrypted_secret: bytes) -> bytes:
        """TPM2_ActivateCredential of a verifier's challenge with the EK and the AK."""
        with self._session() as (tpm, directory):
            _pinned_ak(tpm, directory, tpm.ak_public_pem())
            endorsement = tpm.endorsement()
            try:
                return tpm.activate(endorsement.ek_type, id_object, encrypted_secret)
            except MeasurementError as exc:
                raise MeasurementError(
                    f"the TPM refused to activate the credential: {exc.message}",
                    backend=tpm.backend,
                    hint="the challenge was made for another EK or AK, or was altered",
                ) from exc

    def quote(self, nonce: bytes, pcrs: Sequence[int], out_dir: Path) -> QuoteBundle:
        """Quote ``pcrs`` (sha256 bank) over ``nonce`` and write the bundle into ``out_dir``."""
        if not 8 <= len(nonce) <= 64:
            raise UserError(f"the nonce is {len(nonce)} bytes; give 8 to 64 bytes")
        selected = tuple(sorted(set(pcrs)))
        if not selected or any(isinstance(p, bool) or not 0 <= p <= 23 for p in selected):
            raise UserError(f"PCR selection {list(pcrs)} must be non-empty, each 0-23")
        from trustd.privileged.measure.bundle import write_bundle  # noqa: PLC0415

        with self._session() as (tpm, directory):
            bundle = _quote_once(tpm, directory, nonce, selected)
        write_bundle(out_dir, bundle)
        return bundle


def _pinned_ak(tpm: _esys.Tpm, directory: Path, pem: bytes) -> bytes:
    pin = directory / AK_PIN
    try:
        pinned = read_capped(pin, 64 * 1024)
    except FileNotFoundError:
        atomic_write(pin, pem, mode=0o644)
        return pem
    except (OSError, ValueError) as exc:
        raise LocalStateError(f"{pin}: {exc}", hint=f"remove {pin} to pin the AK again") from exc
    if pinned != pem:
        raise MeasurementError(
            f"the TPM's attestation key is not the one pinned in {pin}: the owner hierarchy "
            f"was cleared (TPM2_Clear), the TPM was replaced, or {directory / 'ak.secret'} is new"
            " (the AK is derived from it since issue #11; a key pinned before it is not)",
            backend=tpm.backend,
            hint=f"verifiers must pin the new key: rm {pin} && rkt attest ak --out AK.pem",
        )
    return pem


def _quote_once(
    tpm: _esys.Tpm, directory: Path, nonce: bytes, pcrs: tuple[int, ...]
) -> QuoteBundle:
    from trustd.privileged.measure.bundle import QuoteBundle  # noqa: PLC0415
    from trustd.privileged.measure.pcrfile import decode_pcr_file, encode_pcr_file  # noqa: PLC0415

    selection = (("sha256", pcrs),)
    ak = None
    for _ in range(3):
        raw = tpm.quote(pcrs, nonce)
        # The quote's own AK is checked against the pin (one CreatePrimary per quote, not two);
        # nothing is written and nothing leaves root before the check passes.
        ak = _pinned_ak(tpm, directory, raw.ak_pem) if ak is None else ak
        if raw.ak_pem != ak:
            raise MeasurementError(
                "the TPM's attestation key changed while quoting", backend=tpm.backend
            )
        chunks = tpm.pcr_read_chunks(selection)
        values = b"".join(v for chunk in chunks for v in chunk)
        if hashlib.sha256(values).digest() == raw.pcr_digest:
            break
    else:
        raise MeasurementError(
            "the quoted PCRs kept changing while they were read back (another program extends "
            f"PCR {list(pcrs)})",
            backend=tpm.backend,
        )
    pcr_file = encode_pcr_file(selection, chunks)
    events = _load(directory / EVENTLOG)
    return QuoteBundle(ak, raw.attest, raw.signature, pcr_file, decode_pcr_file(pcr_file), events)


def _load(path: Path) -> tuple[EventRecord, ...]:
    try:
        return load_log(path)
    except (OSError, ValueError) as exc:
        raise LocalStateError(
            f"event log {path}: {exc}",
            hint="the log no longer matches the TPM; inspect it, then move it aside",
        ) from exc

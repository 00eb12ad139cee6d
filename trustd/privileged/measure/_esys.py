"""The only module that touches tpm2-pytss: typed wrappers, every TSS error turned into ours.

One connection per operation (:func:`connect`): the swtpm socket server serves one client at a
time, so holding a connection across a run would block every other trustd process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from tpm2_pytss import (  # type: ignore[import-untyped]
    ESAPI,
    ESYS_TR,
    TPM2_ALG,
    TPM2_CAP,
    TPM2_SE,
    TPM2B_AUTH,
    TPM2B_ENCRYPTED_SECRET,
    TPM2B_ID_OBJECT,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE_CREATE,
    TPMA_OBJECT,
    TPML_DIGEST_VALUES,
    TPML_PCR_SELECTION,
    TPMS_ATTEST,
    TPMS_PCR_SELECTION,
    TPMS_SENSITIVE_CREATE,
    TPMT_HA,
    TPMT_SIG_SCHEME,
    TPMT_SYM_DEF,
    TPMU_HA,
    TSS2_Exception,
)
from tpm2_pytss.utils import (  # type: ignore[import-untyped]
    NoSuchIndex,
    NVReadEK,
    create_ek_template,
)

from trustd.privileged.measure._aksecret import AkSecret
from trustd.privileged.measure._rawtpm import Clock
from trustd.privileged.measure._unixtpm import UnixTcti
from trustd.privileged.measure.errors import MeasurementError, tpm_failed
from trustd.privileged.measure.pcrfile import ALG_IDS
from trustd.shared._dataclass import frozen
from trustd.shared.errors import LocalStateError

_ALG_NAMES: Final = {v: k for k, v in ALG_IDS.items()}
# The AK is a primary key under the owner seed: its template's unique field and its auth value
# come from root's secret (``_aksecret``), so the same secret derives the same key every time
# and nobody without it derives that key or signs with it.
_AK_ATTRS: Final = (
    TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.SIGN_ENCRYPT
    | TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
    | TPMA_OBJECT.NODA  # a wrong auth tried on it must not lock out the TPM's other keys
)


@frozen
class Endorsement:
    """The EK as the TPM derives it from its template, and its certificate from NV (if any)."""

    ek_type: str  # "EK-RSA2048" or "EK-ECC256"
    ek_public: bytes  # TPM2B_PUBLIC, as tpm2_createek -u writes it
    ek_cert: bytes | None  # DER, from NV 0x01c00002 (RSA) or 0x01c0000a (ECC P-256)


@frozen
class RawQuote:
    attest: bytes
    signature: bytes
    ak_pem: bytes
    pcr_digest: bytes


class Tpm:
    """An open ESAPI context; use through :func:`connect`."""

    def __init__(self, ctx: Any, backend: str, ak_secret: AkSecret | None = None) -> None:
        self._ctx = ctx
        self.backend = backend
        self._ak_secret = ak_secret

    def banks(self, pcr: int) -> tuple[str, ...]:
        """Hash banks allocated for ``pcr``, by name, in TPM order."""
        _, data = self._ctx.get_capability(TPM2_CAP.PCRS, 0, 1)
        out = []
        for sel in data.data.assignedPCR:
            name = _ALG_NAMES.get(int(sel.hash))
            if (
                name
                and pcr // 8 < sel.sizeofSelect
                and bytes(sel.pcrSelect)[pcr // 8] >> pcr % 8 & 1
            ):
                out.append(name)
        return tuple(out)

    def clock(self) -> Clock:
        info = self._ctx.read_clock().clockInfo
        return Clock(reset_count=int(info.resetCount), restart_count=int(info.restartCount))

    def extend(self, pcr: int, digests: dict[str, bytes]) -> None:
        values = [
            TPMT_HA(hashAlg=ALG_IDS[alg], digest=TPMU_HA(**{alg: d})) for alg, d in digests.items()
        ]
        self._ctx.pcr_extend(ESYS_TR.PCR0 + pcr, TPML_DIGEST_VALUES(values))

    def pcr_read_chunks(
        self, selection: tuple[tuple[str, tuple[int, ...]], ...]
    ) -> tuple[tuple[bytes, ...], ...]:
        """Read PCRs as the TPM returns them (≤ 8 per call), like tpm2_quote does."""
        remaining = {bank: set(pcrs) for bank, pcrs in selection}
        chunks: list[tuple[bytes, ...]] = []
        while any(remaining.values()):
            _, got, values = self._ctx.pcr_read(_selection(remaining))
            done = [(b, p) for b, ps in _decode(got) for p in ps]
            if not done:
                raise MeasurementError("the TPM returned no PCR values", backend=self.backend)
            for bank, pcr in done:
                remaining[bank].discard(pcr)
            chunks.append(tuple(bytes(v) for v in values))
        return tuple(chunks)

    def pcr_values(self, pcr: int, banks: tuple[str, ...]) -> dict[str, bytes]:
        chunks = self.pcr_read_chunks(tuple((bank, (pcr,)) for bank in banks))
        flat = [v for chunk in chunks for v in chunk]
        return dict(zip(banks, flat, strict=True))

    def ak_public_pem(self) -> bytes:
        handle, public = self._create_ak()
        self._ctx.flush_context(handle)
        return bytes(public.to_pem())

    def quote(self, pcrs: tuple[int, ...], nonce: bytes) -> RawQuote:
        handle, public = self._create_ak()
        try:
            scheme = TPMT_SIG_SCHEME(scheme=TPM2_ALG.ECDSA)
            scheme.details.any.hashAlg = TPM2_ALG.SHA256
            sel = _selection({"sha256": set(pcrs)})
            attest, sig = self._ctx.quote(handle, sel, nonce, scheme)
        finally:
            self._ctx.flush_context(handle)
        info, _ = TPMS_ATTEST.unmarshal(bytes(attest))
        digest = bytes(info.attested.quote.pcrDigest)
        return RawQuote(bytes(attest), bytes(sig.marshal()), bytes(public.to_pem()), digest)

    def ak_public_area(self) -> bytes:
        """The AK's TPM2B_PUBLIC: a verifier computes its Name and checks its attributes."""
        handle, public = self._create_ak()
        self._ctx.flush_context(handle)
        return bytes(public.marshal())

    def endorsement(self) -> Endorsement:
        """The EK from the TCG EK profile's template (or the one NV holds) and its certificate.

        Tried in order RSA 2048, ECC P-256: the first with a certificate in NV wins; with none,
        the RSA EK (enrolment is then TOFU only).
        """
        read = self._nv_reader()
        found: list[tuple[str, bytes | None, Any]] = []
        for ek_type in ("EK-RSA2048", "EK-ECC256"):
            cert, template = create_ek_template(ek_type, read)
            found.append((ek_type, bytes(cert) if cert else None, template))
        ek_type, cert, template = next((f for f in found if f[1]), found[0])
        handle, public = self._create_ek(template)
        self._ctx.flush_context(handle)
        return Endorsement(ek_type, bytes(public.marshal()), cert)

    def activate(self, ek_type: str, id_object: bytes, encrypted_secret: bytes) -> bytes:
        """TPM2_ActivateCredential with the AK and the EK: the secret, if the TPM holds both."""
        _, template = create_ek_template(ek_type, self._nv_reader())
        ek, _ = self._create_ek(template)
        try:
            ak, _ = self._create_ak()
            try:
                session = self._ctx.start_auth_session(
                    ESYS_TR.NONE,
                    ESYS_TR.NONE,
                    TPM2_SE.POLICY,
                    TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL),
                    TPM2_ALG.SHA256,
                )
                try:  # the EK's policy: PolicySecret(TPM_RH_ENDORSEMENT)
                    self._ctx.policy_secret(ESYS_TR.ENDORSEMENT, session)
                    secret = self._activate(
                        ak,
                        ek,
                        TPM2B_ID_OBJECT(id_object),
                        TPM2B_ENCRYPTED_SECRET(encrypted_secret),
                        session1=ESYS_TR.PASSWORD,
                        session2=session,
                    )
                finally:
                    with contextlib.suppress(TSS2_Exception):
                        self._ctx.flush_context(session)
            finally:
                self._ctx.flush_context(ak)
        finally:
            self._ctx.flush_context(ek)
        return bytes(secret)

    def _nv_reader(self) -> Any:
        """NVReadEK that asks only for indices the TPM has (no ESYS error log for the rest)."""
        defined: set[int] = set()
        more, start = True, 0x01000000
        while more:
            more, data = self._ctx.get_capability(TPM2_CAP.HANDLES, start, 64)
            handles = [int(h) for h in data.data.handles]
            defined.update(handles)
            more = more and bool(handles)
            start = max(handles, default=start) + 1
        read = NVReadEK(self._ctx)

        def reader(index: int) -> bytes:
            if int(index) not in defined:
                raise NoSuchIndex(index)
            return bytes(read(index))

        return reader

    def _activate(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._ctx.activate_credential(*args, **kwargs)
        except TSS2_Exception as exc:
            raise MeasurementError(f"TPM2_ActivateCredential: {exc}", backend=self.backend) from exc

    def _create_ek(self, template: Any) -> tuple[Any, Any]:
        handle, public, *_ = self._ctx.create_primary(
            TPM2B_SENSITIVE_CREATE(), template, ESYS_TR.ENDORSEMENT
        )
        return handle, public

    def _create_ak(self) -> tuple[Any, Any]:
        if self._ak_secret is None:
            raise MeasurementError("no AK secret was given for this session", backend=self.backend)
        template = TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256:null", objectAttributes=_AK_ATTRS)
        template.publicArea.unique.ecc.x = self._ak_secret.unique
        auth = TPM2B_AUTH(self._ak_secret.auth)
        sensitive = TPM2B_SENSITIVE_CREATE(TPMS_SENSITIVE_CREATE(userAuth=auth))
        handle, public, *_ = self._ctx.create_primary(sensitive, template, ESYS_TR.OWNER)
        self._ctx.tr_set_auth(handle, auth)
        return handle, public


def _selection(banks: dict[str, set[int]]) -> Any:
    sels = []
    for bank, pcrs in banks.items():
        if not pcrs:
            continue
        bits = bytearray(3)
        for p in pcrs:
            bits[p // 8] |= 1 << (p % 8)
        sels.append(TPMS_PCR_SELECTION(hash=ALG_IDS[bank], sizeofSelect=3, pcrSelect=bytes(bits)))
    return TPML_PCR_SELECTION(sels)


def _decode(sel: Any) -> list[tuple[str, list[int]]]:
    out = []
    for s in sel:
        bits = bytes(s.pcrSelect)
        pcrs = [p for p in range(s.sizeofSelect * 8) if bits[p // 8] >> (p % 8) & 1]
        out.append((_ALG_NAMES[int(s.hash)], pcrs))
    return out


@contextlib.contextmanager
def connect(
    tcti: str,
    backend: str,
    *,
    socket_dir: Path | None = None,
    ak_secret: AkSecret | None = None,
) -> Iterator[Tpm]:
    """Open the TPM, run the body, close; any TSS error becomes :class:`MeasurementError`.

    ``socket_dir``: the embedded swtpm's directory, reached with :class:`UnixTcti`, not
    through ``tcti`` (which then only describes it).
    """
    own = None
    try:
        own = UnixTcti(socket_dir) if socket_dir is not None else None
        ctx = ESAPI(own if own is not None else tcti)
    except (TSS2_Exception, OSError, RuntimeError, LocalStateError) as exc:
        if own is not None:
            own.do_finalize()
        raise tpm_failed(tcti, backend, exc, opening=True) from exc
    try:
        yield Tpm(ctx, backend, ak_secret)
    except (TSS2_Exception, OSError, RuntimeError) as exc:
        raise tpm_failed(tcti, backend, exc, opening=False) from exc
    finally:
        with contextlib.suppress(TSS2_Exception, OSError, RuntimeError):
            ctx.close()
        if own is not None:  # ESAPI finalizes only the TCTIs it loaded itself
            own.do_finalize()

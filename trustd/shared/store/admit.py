"""The gate into the store: inspect the archive, then verify its signature (or record the opt-out).

The same gate runs when root re-reads stored bytes before rendering: nothing the fetch side
wrote is believed without passing it again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from trustd.shared.appc.aci import AciInfo, AciLimits, inspect_aci
from trustd.shared.errors import LocalStateError, PolicyViolationError, TrustdError, UserError
from trustd.shared.imageid import StoreKey
from trustd.shared.keystore import Keystore
from trustd.shared.ocisig.evidence import is_evidence
from trustd.shared.ocisig.identity import SignedIdentity
from trustd.shared.ocisig.name import DockerName
from trustd.shared.stage1image import Stage1Image
from trustd.shared.store._docker_admit import docker_origin, verify_docker_evidence
from trustd.shared.store.model import _ADMIT_TOKEN, AdmittedImage, Provenance
from trustd.shared.verify import verify_all


def admit(
    archive: Path,
    signature: bytes | None,
    keystore: Keystore | None,
    *,
    limits: AciLimits | None = None,
    source: str | None = None,
    source_digest: str = "",
    inspected: AciInfo | None = None,
) -> AdmittedImage:
    """Admit ``archive``: with a keystore, the signature must verify; ``None`` is the opt-out.

    Passing ``keystore=None`` is how ``--insecure-options=image`` is spelled here; it is
    recorded in the provenance, never silently assumed (CONVENTIONS 5).

    ``inspected``: :func:`inspect_aci`'s result for exactly the bytes of ``archive``, taken
    while this process downloaded them (the fetch's one pass, issue #14) or wrote them (a
    Docker conversion's account, ``Converted.info``), so they are not read a second time for
    it. The signature is still verified over ``archive`` here, and root never passes it: it
    inspects, hashes and verifies the stored bytes again before it uses them (:func:`readmit_key`).
    """
    info = (
        inspected
        if inspected is not None
        else inspect_aci(archive, limits=limits or AciLimits(), name=source)
    )
    now = datetime.now(UTC).isoformat(timespec="seconds")
    if keystore is None:
        return AdmittedImage(
            info, None, Provenance((), True, now, source_digest=source_digest), _ADMIT_TOKEN
        )
    if signature is None:
        raise UserError(
            f'image "{info.manifest.name}" has no signature',
            hint="supply one with --signature FILE, or (not recommended) --insecure-options=image",
        )
    results = verify_all(archive, signature, keystore.keyring_for(info.manifest.name))
    signers = tuple(r.signer for r in results)  # distinct; thresholds count them (ADR 0008)
    provenance = Provenance(signers, False, now, results[0].trusted_via)
    return AdmittedImage(info, results[0], provenance, _ADMIT_TOKEN)


def admit_docker_signed(
    archive: Path,
    evidence: bytes,
    keystore: Keystore,
    *,
    identity: SignedIdentity,
    source: str | None = None,
    inspected: AciInfo | None = None,
) -> AdmittedImage:
    """Admit a converted Docker image whose simple signatures verify (``evidence`` is what
    the store keeps as its signature file; root re-runs this from the stored bytes).
    ``inspected``: as for :func:`admit`."""
    info = inspected or inspect_aci(archive, limits=AciLimits(), name=source)
    return _docker_admitted(info, evidence, keystore, identity)


def _docker_admitted(
    info: AciInfo, evidence: bytes, keystore: Keystore, identity: SignedIdentity
) -> AdmittedImage:
    reference, digest, found = verify_docker_evidence(info, evidence, keystore, identity)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    provenance = Provenance(
        tuple(s.signer for s in found),
        False,
        now,
        found[0].trusted_via,
        source_digest=digest,
        signature_format="+".join(sorted({s.format for s in found})),
        docker_reference=str(reference),  # as fetched: its docker:// prefixes vouch
    )
    return AdmittedImage(info, None, provenance, _ADMIT_TOKEN)


def admit_stage1(archive: Path, image: Stage1Image) -> AdmittedImage:
    """Admit trustd's own stage1 image (docs/adr/0018): only the exact bytes this process
    generated from the package data pass; its provenance says "shipped", not "signed" and
    not "insecure". Nothing runs from the store's copy (root derives the stage1 itself)."""
    info = inspect_aci(archive, limits=AciLimits())
    if info.image_id != image.image_id:
        raise LocalStateError(
            f"{archive} is not trustd's {image.flavor} stage1 image",
            hint="this is a bug in trustd; report it with the output of --debug",
        )
    now = datetime.now(UTC).isoformat(timespec="seconds")
    provenance = Provenance((), False, now, trusted_via="shipped with trustd (package data)")
    return AdmittedImage(info, None, provenance, _ADMIT_TOKEN)


def readmit(
    archive: Path, signature: bytes | None, keystore: Keystore | None, expected_digest: str
) -> AdmittedImage:
    """Root's re-check of stored bytes: same gate, plus the digest must equal the record's."""
    admitted = admit(archive, signature, keystore)
    if admitted.info.image_id != "sha512-" + expected_digest:
        raise LocalStateError(
            f"stored image {archive} hashes to {admitted.info.image_id[:39]}…, "
            f"not the recorded sha512-{expected_digest[:32]}…",
            hint="the store was altered; remove the image (rkt image rm) and fetch it again",
        )
    return admitted


# (name, version, docker name) -> policy's rule; the docker name is the manifest's own
IdentityFor = Callable[[str, str | None, DockerName | None], SignedIdentity]
AcceptFor = Callable[[str, str | None, DockerName | None], bool]  # -> may pass unsigned


def readmit_key(
    archive: Path,
    signature: bytes | None,
    keystore: Keystore,
    key: StoreKey,
    *,
    accept_unsigned: AcceptFor,
    identity: IdentityFor | None = None,
) -> AdmittedImage:
    """Root's gate for stored bytes, believing nothing the index says.

    The archive must hash to ``key`` (the full image ID the request named); the image name
    that picks the keyring is the one in the manifest inside those bytes. A signature that is
    there must verify; without one (or when it does not verify), the image passes only when
    ``accept_unsigned(name, version, docker)`` says so now (the request's
    --insecure-options=image, or a policy scope that accepts anything) and is then recorded
    as insecure.
    """
    info = inspect_aci(archive, limits=AciLimits())
    if info.image_id != key.id:
        raise LocalStateError(
            f"stored image {archive.name} hashes to {info.image_id[:39]}…, not the requested "
            f"{key.id[:39]}…",
            hint="the store was altered; remove the image (rkt image rm) and fetch it again",
        )
    now = datetime.now(UTC).isoformat(timespec="seconds")
    name = str(info.manifest.name)
    docker = docker_origin(info.manifest)
    refusal: TrustdError
    if signature is not None and is_evidence(signature):
        version = info.manifest.label("version")
        rule = identity(name, version, docker) if identity is not None else SignedIdentity()
        try:
            return _docker_admitted(info, signature, keystore, rule)
        except TrustdError as exc:
            refusal = exc
    elif signature is not None:
        try:
            results = verify_all(archive, signature, keystore.keyring_for(info.manifest.name))
        except TrustdError as exc:
            refusal = exc
        else:
            signers = tuple(r.signer for r in results)
            provenance = Provenance(signers, False, now, results[0].trusted_via)
            return AdmittedImage(info, results[0], provenance, _ADMIT_TOKEN)
    else:
        refusal = PolicyViolationError(
            f"image {key.id[:39]} ({name}) was stored without signature verification",
            hint="fetch a signed copy, or accept the risk with --insecure-options=image",
        )
    if not accept_unsigned(name, info.manifest.label("version"), docker):
        raise refusal
    return AdmittedImage(info, None, Provenance((), True, now), _ADMIT_TOKEN)

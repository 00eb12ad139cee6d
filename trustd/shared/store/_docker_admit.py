"""The gate for converted Docker images that came with simple signatures.

The same check runs on the fetch side (before storing) and in root (before running), from
the same bytes: the evidence (the fetched manifest, every signature message, the reference
asked for) is decoded and every signature verified again against the keystore's
``docker.d`` keyring for the name, the manifest digest recomputed from the manifest bytes,
and the converted ACI bound to it: its ``appc.io/docker/manifesthash`` annotation must
name that digest and its registry and repository annotations that name.

What this cannot show is that the ACI's files are the manifest's layers; before it renders,
root squashes the stored layers again and compares (trustd/privileged/treestore/_docker.py).
"""

from __future__ import annotations

from trustd.shared.appc.aci import AciInfo
from trustd.shared.appc.manifest import ImageManifest
from trustd.shared.errors import LocalStateError, RemoteLiedError, TrustdError
from trustd.shared.keystore import Keystore
from trustd.shared.ocisig.evidence import decode_evidence
from trustd.shared.ocisig.identity import SignedIdentity
from trustd.shared.ocisig.name import DockerName, DockerReference, split_host
from trustd.shared.ocisig.simple import ImageSignature
from trustd.shared.ocisig.verify import verify_image_signatures

_HINT = "the store was altered; remove the image (rkt image rm) and fetch it again"


def docker_origin(manifest: ImageManifest) -> DockerName | None:
    """The Docker name a converted image's own (content-addressed) manifest records, or None.

    Policy scopes spelled ``docker://`` match it. For a signed image the evidence must name
    it too (:func:`verify_docker_evidence`); for an unsigned one it is as much a claim as the
    AC name beside it, and is believed no more (docs/adr/0021, addendum)."""
    registry = manifest.annotation("appc.io/docker/registryurl")
    repository = manifest.annotation("appc.io/docker/repository")
    if not registry or not repository:
        return None
    try:
        host, _ = split_host(f"{registry}/x")
        return DockerName(host, repository)
    except TrustdError:
        return None


def _aci_docker_name(info: AciInfo) -> DockerName:
    manifest = info.manifest
    registry = manifest.annotation("appc.io/docker/registryurl") or ""
    repository = manifest.annotation("appc.io/docker/repository") or ""
    try:
        host, _ = split_host(f"{registry}/x")
        return DockerName(host, repository)
    except TrustdError as exc:
        raise LocalStateError(
            f"image {manifest.name} has signature evidence but no usable docker origin "
            f"annotations ({exc.message})",
            hint=_HINT,
        ) from exc


def verify_docker_evidence(
    info: AciInfo, data: bytes, keystore: Keystore, identity: SignedIdentity
) -> tuple[DockerReference, str, tuple[ImageSignature, ...]]:
    """(reference, manifest digest, verified signers) or raise the refusal."""
    evidence = decode_evidence(data)
    reference = DockerReference.parse(evidence.reference)
    digest = evidence.manifest_digest
    if reference.digest is not None and reference.digest != digest:
        raise RemoteLiedError(
            f"{reference} was pinned to {reference.digest}, the stored manifest is {digest}",
            hint=_HINT,
        )
    recorded = info.manifest.annotation("appc.io/docker/manifesthash")
    if recorded != digest or _aci_docker_name(info) != reference.name:
        raise LocalStateError(
            f"image {info.manifest.name} was converted from {recorded} of "
            f"{_aci_docker_name(info)}, but its signature evidence is for {digest} of "
            f"{reference.name}",
            hint=_HINT,
        )
    found = verify_image_signatures(
        evidence.messages,
        evidence.sigstore,
        keystore.keyring_for(reference.name),
        [t.key for t in keystore.pem_keys_for(reference.name)],
        reference,
        manifest_digest=digest,
        rule=identity,
        where="the store",
    )
    return reference, digest, found

"""``docker://``, ``docker-archive:`` and ``oci:`` into the store: pull, squash, gate, store.

The order: the trust gate first (no network before it: an unsigned Docker image needs
``--insecure-options=image`` *and* a policy scope that allows it), then the manifest (its
digest checked), the config (its platform checked against the manifest list's entry) and
the layers (sizes capped and free space checked first; each checked against its digest
while it streams, into the store's scratch space), the squash into one ACI in the scratch
space, and the same admission gate as every ACI (``admit`` with no keystore, recording the
opt-out and the manifest digest in the provenance).

An ``oci:`` layout the policy's ``[layouts]`` names is verified as that Docker reference
instead (``_signed_layout``; docs/adr/0028) and stored as a signed image of that name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from trustd.shared._dataclass import frozen
from trustd.shared.docker._squash import SquashLimits
from trustd.shared.docker.convert import Origin, sanitize_identifier
from trustd.shared.docker.documents import (
    INDEX_TYPES,
    Manifest,
    Platform,
    media_type_of,
    parse_config,
    parse_index,
    parse_manifest,
    select_platform,
)
from trustd.shared.errors import PolicyViolationError, RemoteLiedError, TransportError, UserError
from trustd.shared.insecure import Insecure
from trustd.shared.ocisig.name import DockerReference
from trustd.shared.policy import ImageRef
from trustd.shared.store import AdmittedImage, ImageRecord, ImageStore
from trustd.unprivileged.docker._blobs import blob_path, locked_blobs, sweep_blobs
from trustd.unprivileged.docker._layout_files import LayoutFiles
from trustd.unprivileged.docker._local import (
    LocalImage,
    LocalSource,
    load_archive,
    load_oci_layout,
    oci_blob_bytes,
    oci_blob_opener,
    open_archive,
)
from trustd.unprivileged.docker._names import (
    docker_reference,
    policy_ref,
    registry_image_name,
    scope_fix,
)
from trustd.unprivileged.docker._pulled import Pulled, convert_and_store, file_opener
from trustd.unprivileged.docker._signed_layout import fetch_signed_layout, stated_identity
from trustd.unprivileged.docker._space import need_space
from trustd.unprivileged.docker.reference import DockerRef, parse_docker_ref
from trustd.unprivileged.docker.registry import Credentials, Registry, RegistryLimits
from trustd.unprivileged.docker.signatures import (
    SignatureCheck,
    SignedImage,
    cosign_pairs,
    cosign_tag,
)
from trustd.unprivileged.transport.progress import Progress

UNSIGNED_MESSAGE = (
    "signature verification for docker images is not supported (try --insecure-options=image)"
)


AcceptUnsigned = Callable[[ImageRef], bool]  # name:version -> may policy take it unsigned?
LayoutIdentity = Callable[[str, str | None], tuple[str, DockerReference] | None]


@frozen
class DockerFetch:
    """What a Docker fetch needs from its caller (fetch builds it from FetchContext)."""

    store: ImageStore
    insecure: Insecure
    credentials: Credentials = lambda _registry: None
    pull_policy: str = "update"
    limits: RegistryLimits | None = None
    squash_limits: SquashLimits | None = None
    admitted_gate: Callable[[AdmittedImage], None] | None = None  # the policy's fetch gate
    # does the policy scope for this name:version allow an image admitted unsigned?
    accept_unsigned: AcceptUnsigned | None = None
    signatures: SignatureCheck | None = None  # simple signing (signatures.py), None: not checked
    # the policy's [layouts]: (layout directory, tag) -> (key, the Docker reference it states)
    layout_identity: LayoutIdentity | None = None


def gate(ref: DockerRef, insecure: Insecure, accept_unsigned: AcceptUnsigned | None = None) -> None:
    """Docker images carry no appc signature, so they fail closed (threat model, boundary
    15): one is fetched only with ``--insecure-options=image`` *and* a policy scope that
    allows that (``accept_unsigned``, asked with the name and the tag, which becomes the
    image's ``version`` label, so an exact ``name:version`` scope applies). Neither alone is
    enough; both are checked here, before any network, and ``admit`` records the image as
    insecure. The policy's fetch gate still decides the stored image afterwards.
    """
    allowed = (
        None
        if accept_unsigned is None or ref.kind != "registry"
        else accept_unsigned(policy_ref(ref))
    )
    typed = ref.text
    if Insecure.IMAGE not in insecure:
        policy_part = (
            ""
            if allowed is not False
            else f", and a policy scope that allows it ({scope_fix(ref)})"
        )
        raise UserError(UNSIGNED_MESSAGE, hint=_unsigned_hint(ref, policy_part))
    if allowed is False:
        raise PolicyViolationError(
            f'docker image "{typed}" is unsigned, and the policy does not allow unsigned '
            f"images for it (--insecure-options=image alone is not enough)",
            hint=f"{scope_fix(ref)}; see why: rkt policy explain {ref.text}",
        )


def _unsigned_hint(ref: DockerRef, policy_part: str) -> str:
    unsigned = (
        f"to accept it unsigned, pass --insecure-options=image{policy_part}; the store "
        "records it as insecure, with its manifest digest"
    )
    if ref.kind == "oci":
        where = os.path.abspath(ref.path or ".")  # noqa: PTH100 - the key spells it so
        return (
            f"{ref.text} is verified only as the Docker reference the policy names for it: "
            f'add [layouts] "oci:{where}:{ref.tag or "latest"}" = '
            '"docker://REGISTRY/NS/REPO:TAG" to policy.toml, with its signatures in that '
            f"name's lookaside or the layout's .sig tag (docs/adr/0028); or {unsigned}"
        )
    if ref.kind == "archive":
        return (
            f"{ref.text}: signatures are not read from docker-archive: files (they carry "
            "none; copy it to an oci: layout with skopeo and name it in [layouts], "
            f"docs/adr/0028); {unsigned}"
        )
    return f"{ref.text} cannot be verified; {unsigned}"


def fetch_docker(text: str, job: DockerFetch, local: LocalSource | None = None) -> ImageRecord:
    """Fetch one Docker-format image into the store and return its record.

    ``local`` is a ``docker-archive:`` file or ``oci:`` directory the caller opened before
    dropping privileges (:func:`open_local_source`); without it the path is opened here.
    """
    ref = local.ref if local is not None else parse_docker_ref(text)
    stated = stated_identity(ref, job)
    if stated is not None:
        with contextlib.ExitStack() as held:
            return fetch_signed_layout(ref, _open_layout(ref, local, held), job, *stated)
    checked = _signature_check(ref, job)
    if checked is None:
        gate(ref, job.insecure, job.accept_unsigned)
    cached = _cached(ref, job)
    if cached is not None:
        return cached
    if ref.kind == "registry":
        registry = _connect(ref, job)
        manifest, digest, platform = _resolve(registry, ref)
        signed = _verify_signatures(checked, ref, registry, digest)
        sweep_blobs(job.store.layout.tmp, keep=(layer.digest for layer in manifest.layers))
        unchanged = _unchanged(ref, job, digest)
        if unchanged is not None:
            return unchanged
        with _registry_image(ref, job, registry, manifest, digest, platform=platform) as pulled:
            record = convert_and_store(ref, pulled, job, signed)
            job.store.index.set_remote(ref.url, record.key, pulled.source_digest, None)
            return record
    with contextlib.ExitStack() as held:
        pulled = _local_image(ref, local, held)
        return convert_and_store(ref, pulled, job)


def _open_layout(
    ref: DockerRef, local: LocalSource | None, held: contextlib.ExitStack
) -> LayoutFiles:
    if local is not None and local.layout is not None:
        return local.layout
    assert ref.path is not None  # noqa: S101 - OCI layouts always have a path
    layout = LayoutFiles.open(ref.path)
    held.callback(layout.close)
    return layout


# -- simple signing (the signature hook; trustd/unprivileged/docker/signatures.py) -----------
def _signature_check(ref: DockerRef, job: DockerFetch) -> SignatureCheck | None:
    """The check to run for a registry image some key is trusted for (a ``docker://`` prefix
    or a root key), unless the user opted out with ``--insecure-options=image``."""
    check = job.signatures
    if check is None or ref.kind != "registry" or Insecure.IMAGE in job.insecure:
        return None
    return check if check.applies(docker_reference(ref).name) else None


def _verify_signatures(
    check: SignatureCheck | None, ref: DockerRef, registry: Registry, digest: str
) -> SignedImage | None:
    """Before any layer: the signatures of the manifest digest actually fetched (for a list,
    the chosen platform's) must verify, else the refusal is raised and nothing is stored."""
    if check is None:
        return None
    body, _media, got = registry.manifest(digest)  # digest-checked by the client
    scope = policy_ref(ref)
    return check.verify(
        docker_reference(ref), body, got, scope, lambda d: _cosign_attachments(registry, d)
    )


def _cosign_attachments(registry: Registry, digest: str) -> list[tuple[bytes, str]]:
    """The cosign signatures attached to ``digest`` in the same repository (none: [])."""
    try:
        body, _media, _got = registry.manifest(cosign_tag(digest))
    except UserError:  # 404: the image has no sigstore attachment
        return []
    return cosign_pairs(body, registry.blob_bytes)


def _cached(ref: DockerRef, job: DockerFetch) -> ImageRecord | None:
    """Pull policies ``new``/``never`` reuse what this URL stored before (rkt's behaviour)."""
    if job.pull_policy == "update" or ref.kind != "registry":
        return None
    row = job.store.index.remote(ref.url)
    records = job.store.index.by_key_prefix(row[0]) if row else []
    if records:
        return records[0]
    if job.pull_policy == "never":
        raise UserError(
            f"unable to fetch image from {ref.url}: the pull policy is never and "
            "it is not in the store"
        )
    return None


def _unchanged(ref: DockerRef, job: DockerFetch, digest: str) -> ImageRecord | None:
    """``update``: the registry still names the manifest this URL stored last time, and that
    image is still in the store: keep it, download no layer."""
    row = job.store.index.remote(ref.url)
    if row is None or row[1] != digest:
        return None
    records = job.store.index.by_key_prefix(row[0])
    if not records:
        return None
    print(f"image: {ref.url} is unchanged ({digest}), using the stored image", file=sys.stderr)
    job.store.index.set_remote(ref.url, records[0].key, digest, None)
    return records[0]


def _connect(ref: DockerRef, job: DockerFetch) -> Registry:
    registry = Registry(
        ref.registry,
        ref.repository,
        insecure=job.insecure,
        credentials=job.credentials,
        limits=job.limits,
    )
    registry.ping()
    return registry


def _resolve(registry: Registry, ref: DockerRef) -> tuple[Manifest, str, Platform | None]:
    """The image manifest for this host (a manifest list picks the platform), its digest,
    and the platform the list named for it (None for a plain manifest)."""
    body, media, digest = registry.manifest(ref.reference)
    label = f"{ref.registry}/{ref.repository}@{digest}"
    media = media_type_of(body, media, label)
    platform = None
    if media in INDEX_TYPES:
        chosen = select_platform(parse_index(body, media, label), label)
        platform = chosen.platform
        body, media, digest = registry.manifest(chosen.digest)
        label = f"{ref.registry}/{ref.repository}@{digest}"
        media = media_type_of(body, media, label)
        if media in INDEX_TYPES:
            raise RemoteLiedError(f"{label}: a manifest list names another manifest list")
    return parse_manifest(body, media, label), digest, platform


def _check_platform(config_bytes: bytes, platform: Platform | None, label: str) -> None:
    """A manifest list entry is chosen by the platform it claims; the config it leads to
    must be that platform, or an arm64 image would be stored and run as amd64."""
    if platform is None:
        return
    config = parse_config(config_bytes, f"{label} (config)")
    if (config.os, config.architecture) != (platform.os, platform.architecture):
        raise RemoteLiedError(
            f"{label}: the manifest list names it for {platform.os}/{platform.architecture}, "
            f"but its config says {config.os}/{config.architecture}",
            hint="the registry's manifest list is wrong or hostile; nothing was stored "
            "(ask its owner to fix the list, or fetch the image by the digest you expect)",
        )


@contextlib.contextmanager
def _registry_image(
    ref: DockerRef,
    job: DockerFetch,
    registry: Registry,
    manifest: Manifest,
    digest: str,
    *,
    platform: Platform | None = None,
) -> Iterator[Pulled]:
    """Config and layers, each checked against its digest, into locked scratch files.

    A failure in transit keeps the layer files for the next attempt to resume; anything
    else (wrong bytes, a refused image, a full disk, success) removes them, still under
    their locks. Before the first byte: every layer's declared size within the cap, and
    room for all of them in ``cas/tmp``; leftovers of killed fetches are swept.
    """
    for layer in manifest.layers:
        registry.check_size(layer.digest, layer.size)
    config_bytes = registry.blob_bytes(manifest.config.digest, manifest.config.size)
    _check_platform(config_bytes, platform, f"{ref.registry}/{ref.repository}@{digest}")
    tmp = job.store.layout.tmp
    digests = (layer.digest for layer in manifest.layers)
    with locked_blobs(tmp, digests, registry.limits.blob.min_rate) as files:
        keep = False
        try:
            _room_for(registry, manifest, files, tmp)
            for layer in manifest.layers:
                _download_layer(registry, layer.digest, layer.size, files[layer.digest], tmp)
            origin = Origin(
                name=registry_image_name(ref),
                tag=ref.tag,
                registry_url=ref.registry,
                repository=ref.repository,
                original_name=ref.text.removeprefix("docker://").removeprefix("docker:"),
                image_id=manifest.config.digest,
                manifest_hash=digest,
            )
            paths = tuple(blob_path(tmp, layer.digest) for layer in manifest.layers)
            blobs: list[tuple[str, Path | bytes]] = [(manifest.config.digest, config_bytes)]
            blobs += [(layer.digest, p) for layer, p in zip(manifest.layers, paths, strict=True)]
            openers = tuple(file_opener(p) for p in paths)
            yield Pulled(config_bytes, openers, origin, digest, (), tuple(blobs))
        except (TransportError, KeyboardInterrupt):
            keep = True
            raise
        finally:
            if not keep:
                for d in files:
                    blob_path(tmp, d).unlink(missing_ok=True)


def _room_for(
    registry: Registry, manifest: Manifest, files: dict[str, BinaryIO], tmp: Path
) -> None:
    """All the layers still to download fit in ``cas/tmp`` above the reserve."""
    sizes = {layer.digest: layer.size for layer in manifest.layers}
    need = sum(max(size - files[d].seek(0, os.SEEK_END), 0) for d, size in sizes.items())
    any_file = next(iter(files.values()), None)
    if any_file is not None:
        what = f"{len(sizes)} layer(s) of {registry.host}/{registry.repository}"
        need_space(any_file.fileno(), need, registry.limits.reserve, what, str(tmp))


def _download_layer(registry: Registry, digest: str, size: int, f: BinaryIO, tmp: Path) -> None:
    have = f.seek(0, os.SEEK_END)
    if 0 < have < size:
        print(f"image: resuming layer {digest} at byte {have} of {size}", file=sys.stderr)
    progress = Progress(f"layer {_short(digest)}", start=have)
    registry.blob_to(digest, size, f, progress, str(tmp))


def _short(digest: str) -> str:
    return digest.partition(":")[2][:12]


def _local_image(ref: DockerRef, local: LocalSource | None, held: contextlib.ExitStack) -> Pulled:
    """An archive or layout, read through what the caller opened (or opened here)."""
    assert ref.path is not None  # noqa: S101 - local sources always have a path
    if ref.kind == "archive":
        archive = local.archive if local is not None else None
        if archive is None:
            archive = held.enter_context(open_archive(ref.path))
        return _archive_image(ref.path, archive)
    return _oci_image(ref, _open_layout(ref, local, held))


def _archive_image(path: Path, archive: BinaryIO) -> Pulled:
    image: LocalImage = load_archive(path, archive)
    origin = Origin(
        name=sanitize_identifier(image.repository or path.stem) or "docker-archive",
        tag=image.tag,
        repository=image.repository,
        image_id=image.image_id,
        parent_image_id=image.parent_id,
        manifest_hash=image.manifest_digest,
    )
    source_digest = image.manifest_digest
    if not source_digest.startswith("sha256:"):  # legacy layout: the archive's own digest
        source_digest = _file_sha256(archive)
    return Pulled(image.config_json, image.layers, origin, source_digest, image.diff_ids)


def _file_sha256(f: BinaryIO) -> str:
    h = hashlib.sha256()
    f.seek(0)
    while chunk := f.read(1 << 20):
        h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def _oci_image(ref: DockerRef, layout: LayoutFiles) -> Pulled:
    assert ref.path is not None  # noqa: S101 - OCI layouts always have a path
    manifest, digest = load_oci_layout(layout, ref.tag)
    config_bytes = oci_blob_bytes(layout, manifest.config.digest, manifest.config.size)
    name = ref.path.resolve().name
    origin = Origin(
        name=sanitize_identifier(name) or "oci-image",
        tag=ref.tag or "latest",
        image_id=manifest.config.digest,
        manifest_hash=digest,
    )
    layers = tuple(oci_blob_opener(layout, d.digest, d.size) for d in manifest.layers)
    return Pulled(config_bytes, layers, origin, digest, ())

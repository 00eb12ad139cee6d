"""A local OCI layout verified as the Docker reference the policy states (docs/adr/0028).

The policy's ``[layouts]`` table names the reference (``oci:/DIR[:TAG]`` ->
``docker://REGISTRY/NS/REPO[:TAG]``); nothing in the layout chooses it. The signatures of
the manifest digest read from the layout are checked as for that reference fetched from a
registry: simple signatures from the registries.d lookaside configured for its name
(``file://`` or ``http(s)://``), cosign attachments from the layout's own index (the entry
tagged ``sha256-<hex>.sig``, as ``skopeo copy`` of the ``.sig`` tag writes it), keys trusted
for its ``docker://`` prefix, the policy's identity rule for its scope.

Every document is read once and hashed as read, and every layer is copied into locked
scratch files in ``cas/tmp`` while it is hashed; the squash reads those copies, and the store
keeps them, so what the layout's owner writes after a check is never used (root converts
the kept copies again before it renders: docs/adr/0021, addendum).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from trustd.shared.docker.convert import Origin
from trustd.shared.docker.documents import COSIGN_SIGS_KIND, Descriptor, Index, Manifest
from trustd.shared.errors import PolicyViolationError, RemoteLiedError, UserError
from trustd.shared.insecure import Insecure
from trustd.shared.ocisig.name import DockerReference
from trustd.shared.ocisig.verify import SigstorePair
from trustd.unprivileged.docker._blobs import blob_path, locked_blobs
from trustd.unprivileged.docker._layout_files import LayoutFiles
from trustd.unprivileged.docker._local import load_oci_manifest, oci_blob_bytes, read_verified
from trustd.unprivileged.docker._names import policy_ref, registry_image_name
from trustd.unprivileged.docker._pulled import Pulled, convert_and_store, file_opener
from trustd.unprivileged.docker._space import SpaceWatch, need_space
from trustd.unprivileged.docker.reference import DockerRef, parse_docker_ref
from trustd.unprivileged.docker.registry import RegistryLimits
from trustd.unprivileged.docker.signatures import cosign_pairs, cosign_tag

if TYPE_CHECKING:
    from trustd.shared.store import ImageRecord
    from trustd.unprivileged.docker.fetch import DockerFetch

_CHUNK = 1 << 20


def layout_attachments(layout: LayoutFiles, index: Index, digest: str) -> list[SigstorePair]:
    """The cosign signatures the layout holds for ``digest``: its ``sha256-<hex>.sig``
    entry's layers, else (a layout ``cosign save`` wrote) the layers of the entry whose
    ``kind`` is ``dev.cosignproject.cosign/sigs`` (none: []). Which entry they come from
    vouches for nothing: each payload names the manifest digest it signs, and only payloads
    naming ``digest`` count."""
    tag = cosign_tag(digest)
    entries = [d for d in index.manifests if d.ref_name == tag]
    what = f"tagged {tag}"
    if not entries:
        entries = [d for d in index.manifests if d.kind == COSIGN_SIGS_KIND and not d.ref_name]
        what = f'of kind "{COSIGN_SIGS_KIND}"'
    if not entries:
        return []
    if len(entries) > 1:
        raise RemoteLiedError(
            f"OCI layout {layout.path}: {len(entries)} index entries are {what}",
            hint="keep one signature image per image in the layout's index.json",
        )
    body = read_verified(layout, entries[0].digest, entries[0].size)
    return cosign_pairs(body, lambda d, size: read_verified(layout, d, size))


def _copy_blob(layout: LayoutFiles, layer: Descriptor, out: BinaryIO, watch: SpaceWatch) -> None:
    """``layer`` from the layout into ``out``, hashed as copied; at most its declared size
    (and one byte more, to call a longer file what it is)."""
    algo, _, hexpart = layer.digest.partition(":")
    h = hashlib.new(algo)
    out.seek(0)
    out.truncate()
    copied = 0
    try:
        with layout.open_file(f"blobs/{algo}/{hexpart}") as f:
            while copied <= layer.size and (chunk := f.read(min(_CHUNK, layer.size + 1 - copied))):
                h.update(chunk)
                out.write(chunk)
                copied += len(chunk)
                watch.wrote(len(chunk))
    except FileNotFoundError as exc:
        raise UserError(
            f"OCI layout {layout.path}: layer {layer.digest} is not in the layout",
            hint="the layout must hold every blob its manifest names, as regular files "
            "(a symlinked blob is never followed)",
        ) from exc
    out.flush()
    got = f"{algo}:{h.hexdigest()}"
    if copied != layer.size or got != layer.digest:
        raise RemoteLiedError(
            f"OCI layout {layout.path}: layer {layer.digest} read as {copied} bytes hashing "
            f"to {got} (the manifest says {layer.size} bytes)",
            hint="the layout changed or is corrupt; nothing was stored",
        )


@contextmanager
def copied_layers(
    layout: LayoutFiles, manifest: Manifest, tmp: Path, limits: RegistryLimits
) -> Iterator[tuple[Path, ...]]:
    """Each layer copied (hashed) into a locked scratch file; yields their paths, in order.

    The copies are removed afterwards (the store hard-links the ones it keeps)."""
    digests = [layer.digest for layer in manifest.layers]
    with locked_blobs(tmp, digests, limits.blob.min_rate) as files:
        try:
            any_file = next(iter(files.values()), None)
            if any_file is not None:
                what = f"{len(files)} layer(s) of OCI layout {layout.path}"
                size = sum({layer.digest: layer.size for layer in manifest.layers}.values())
                need_space(any_file.fileno(), size, limits.reserve, what, str(tmp))
                watch = SpaceWatch(any_file.fileno(), limits.reserve, what, str(tmp))
                done: set[str] = set()
                for layer in manifest.layers:
                    if layer.digest not in done:
                        _copy_blob(layout, layer, files[layer.digest], watch)
                        done.add(layer.digest)
            yield tuple(blob_path(tmp, d) for d in digests)
        finally:
            for d in files:
                blob_path(tmp, d).unlink(missing_ok=True)


def stated_identity(ref: DockerRef, job: DockerFetch) -> tuple[str, DockerReference] | None:
    """The Docker reference the policy states for an ``oci:`` layout (docs/adr/0028), unless
    the user opted out with ``--insecure-options=image`` (then: an unsigned import)."""
    if ref.kind != "oci" or job.layout_identity is None or Insecure.IMAGE in job.insecure:
        return None
    assert ref.path is not None  # noqa: S101 - OCI layouts always have a path
    return job.layout_identity(os.path.abspath(ref.path), ref.tag)  # noqa: PTH100


def fetch_signed_layout(
    ref: DockerRef, layout: LayoutFiles, job: DockerFetch, key: str, target: DockerReference
) -> ImageRecord:
    """Verify the layout's manifest as ``target`` before any layer is read, then store it
    under that name, with the evidence root verifies again."""
    check = job.signatures
    named = parse_docker_ref(f"docker://{target}")
    if check is None or not check.applies(target.name):
        raise PolicyViolationError(
            f'{ref.text} is stated as "docker://{target}" in the policy\'s [layouts] '
            f'("{key}"), but no key is trusted for docker://{target.name}, so its signatures '
            "cannot be checked",
            hint=f'run: rkt trust --prefix "docker://{target.name}" KEY (an OpenPGP key or a '
            "sigstore PEM public key), or remove the [layouts] entry and pass "
            "--insecure-options=image to import it unsigned",
        )
    manifest, digest, body, index = load_oci_manifest(layout, ref.tag)
    signed = check.verify(
        target, body, digest, policy_ref(named), lambda d: layout_attachments(layout, index, d)
    )
    config_bytes = oci_blob_bytes(layout, manifest.config.digest, manifest.config.size)
    limits = job.limits if job.limits is not None else RegistryLimits()
    with copied_layers(layout, manifest, job.store.layout.tmp, limits) as paths:
        origin = Origin(
            name=registry_image_name(named),
            tag=named.tag,
            registry_url=named.registry,
            repository=named.repository,
            original_name=ref.text,
            image_id=manifest.config.digest,
            manifest_hash=digest,
        )
        blobs: list[tuple[str, Path | bytes]] = [(manifest.config.digest, config_bytes)]
        blobs += [(layer.digest, p) for layer, p in zip(manifest.layers, paths, strict=True)]
        openers = tuple(file_opener(p) for p in paths)
        pulled = Pulled(config_bytes, openers, origin, digest, (), tuple(blobs))
        print(
            f"image: {ref.text} verified as docker://{target} ({key}), manifest {digest}",
            file=sys.stderr,
        )
        return convert_and_store(ref, pulled, job, signed)

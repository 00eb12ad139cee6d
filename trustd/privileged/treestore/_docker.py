"""Root converts a signed docker image again, from the blobs its signed manifest names.

The fetch child (rkt-fetch) squashed the layers into the stored ACI, and the group can write
that ACI, its evidence and the index. So before root renders an image whose evidence
verified, it believes none of the conversion: it parses the signed manifest (the evidence's
bytes, whose digest the signatures cover), reads the config and every layer beneath the
checked ``cas`` fd (no symlink, regular files only), hashing each while it reads and
refusing it unless it has the manifest's digest and size, and runs the same squash
(:mod:`trustd.shared.docker`, the fetch side's limits) into a sink that only hashes. The
image is rendered only if that output is the stored ACI byte for byte: its sha512 must be
the image ID. Root writes nothing to disk for this; memory is bounded by the squash limits.

The ACI's name, ``version`` label and tag come from the signed reference; its registry and
repository annotations are bound to that reference by
:func:`~trustd.shared.store._docker_admit.verify_docker_evidence`; only the
``appc.io/docker/originalname`` annotation (the text the user typed) is taken from the ACI.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from collections.abc import Callable
from typing import BinaryIO, Final, cast

from trustd.privileged import _dirfd
from trustd.shared.appc._aci_scan import corrupt_errors
from trustd.shared.appc.manifest import ImageManifest
from trustd.shared.docker._squash import SquashLimits
from trustd.shared.docker.convert import Origin, convert, sanitize_identifier
from trustd.shared.docker.documents import (
    INDEX_TYPES,
    Descriptor,
    media_type_of,
    parse_manifest,
)
from trustd.shared.errors import LocalStateError, TrustdError
from trustd.shared.imageid import StoreKey
from trustd.shared.ocisig.evidence import decode_evidence
from trustd.shared.ocisig.name import DockerReference
from trustd.shared.store._layout import docker_blob_name

MAX_CONFIG: Final = 8 << 20  # the fetch side's cap on a config document


def _hint(key: StoreKey) -> str:
    return (
        f"the store was altered, or the image was stored before trustd kept its layers: "
        f"rkt image rm {key.id[:39]}, then fetch it again"
    )


class _NullSink:
    """Where root's squash writes: nothing is kept (the squash hashes what it writes)."""

    def write(self, data: bytes, /) -> int:
        return len(data)


class _CheckedBlob:
    """One stored blob, read once from start to end: hashed while read, its size capped at
    the descriptor's; :meth:`close` reads what is left and refuses any difference."""

    def __init__(
        self,
        fd: int,
        desc: Descriptor,
        where: str,
        done: Callable[[], None],
        aborted: list[bool] | None = None,
    ) -> None:
        algo, _, self.want = desc.digest.partition(":")
        self.fd, self.desc, self.where, self.done = fd, desc, where, done
        self.aborted = aborted if aborted is not None else [False]
        self.hash = hashlib.new(algo)
        self.seen = 0

    def read(self, n: int = -1, /) -> bytes:
        want = 1 << 20 if n is None or n < 0 else n
        data = os.read(self.fd, min(want, self.desc.size - self.seen + 1))
        self.seen += len(data)
        if self.seen > self.desc.size:
            raise self._refusal(f"is longer than the {self.desc.size} bytes its manifest says")
        self.hash.update(data)
        return data

    def _refusal(self, what: str) -> LocalStateError:
        return LocalStateError(f"stored blob {self.where} {what}", hint="")

    def close(self) -> None:
        if self.fd < 0:
            return
        try:
            if self.aborted[0] or isinstance(sys.exc_info()[1], GeneratorExit):
                # the squash let go of this layer before its end: an error is on its way up
                # (raising here would only be printed as ignored); the conversion is refused
                self.aborted[0] = True
                return
            while self.read(1 << 20):
                pass
            if self.seen != self.desc.size or self.hash.hexdigest() != self.want:
                raise self._refusal(
                    f"does not have the digest {self.desc.digest} its manifest says"
                )
        finally:
            os.close(self.fd)
            self.fd = -1
        self.done()


def _open_blob(cas_fd: int, key: StoreKey, desc: Descriptor) -> tuple[int, str]:
    rel = f"{key.blob_relpath}/{docker_blob_name(desc.digest)}"
    try:
        fd = _dirfd.open_beneath(cas_fd, rel, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError as exc:
        raise LocalStateError(
            f"image {key.id[:39]}… has docker signature evidence but its blob {desc.digest} "
            "is not in the store",
            hint=_hint(key),
        ) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LocalStateError(f"stored blob {rel} is not a regular file", hint=_hint(key))
    return fd, rel


def _read_config(cas_fd: int, key: StoreKey, desc: Descriptor) -> bytes:
    if desc.size > MAX_CONFIG:
        raise LocalStateError(
            f"the signed manifest's config is {desc.size} bytes, more than {MAX_CONFIG}",
            hint=_hint(key),
        )
    fd, rel = _open_blob(cas_fd, key, desc)
    blob = _CheckedBlob(fd, desc, rel, lambda: None)
    data = b""
    try:
        while chunk := blob.read():
            data += chunk
    finally:
        blob.close()
    return data


def _origin(aci: ImageManifest, reference: DockerReference, digest: str, config: str) -> Origin:
    registry = aci.annotation("appc.io/docker/registryurl") or ""
    repository = aci.annotation("appc.io/docker/repository") or ""
    return Origin(
        name=sanitize_identifier(f"{registry}/{repository}"),
        tag=reference.tag,
        registry_url=registry,
        repository=repository,
        original_name=aci.annotation("appc.io/docker/originalname") or "",
        image_id=config,
        manifest_hash=digest,
    )


def check_conversion(
    cas_fd: int,
    key: StoreKey,
    evidence_bytes: bytes,
    aci: ImageManifest,
    limits: SquashLimits | None = None,
) -> None:
    """Refuse (LocalStateError) unless squashing the signed manifest's stored layers gives
    exactly the stored ACI ``key`` names. ``evidence_bytes`` verified just now."""
    evidence = decode_evidence(evidence_bytes)
    aborted = [False]  # set on failure: blobs a squash generator closes late raise nothing
    reference = DockerReference.parse(evidence.reference)
    digest = evidence.manifest_digest
    label = f"{reference.name}@{digest}"
    try:
        media = media_type_of(evidence.manifest, "", label)
        if media in INDEX_TYPES:
            raise LocalStateError(f"{label}: the signed manifest is a manifest list")
        manifest = parse_manifest(evidence.manifest, media, label)
        config = _read_config(cas_fd, key, manifest.config)
        verified: list[int] = []
        openers = [
            _layer_opener(cas_fd, key, d, i, verified, aborted=aborted)
            for i, d in enumerate(manifest.layers)
        ]
        converted = convert(
            tuple(openers),
            config,
            _origin(aci, reference, digest, manifest.config.digest),
            cast(BinaryIO, _NullSink()),
            label=label,
            limits=limits or SquashLimits(),
        )
    except TrustdError as exc:
        aborted[0] = True
        raise LocalStateError(
            f"image {key.id[:39]}…: root's conversion of {label} from its stored layers "
            f"failed: {exc.message}",
            hint=_hint(key),
        ) from exc
    except corrupt_errors() as exc:  # pass 2 reads the data pass 1 checked: it changed since
        aborted[0] = True
        raise LocalStateError(
            f"image {key.id[:39]}…: root's conversion of {label} from its stored layers "
            f"failed: a layer changed while root read it ({exc!r})",
            hint=_hint(key),
        ) from exc
    if aborted[0] or set(verified) != set(range(len(manifest.layers))):  # each read whole
        raise LocalStateError(f"image {key.id[:39]}…: a layer of {label} was not read whole")
    got = converted.account.sha512
    if got != key.digest:
        raise LocalStateError(
            f"image {key.id[:39]}… is not the conversion of the signed {label}: root's "
            f"squash of its layers is sha512-{got[:32]}…",
            hint=_hint(key),
        )


def _layer_opener(
    cas_fd: int,
    key: StoreKey,
    desc: Descriptor,
    index: int,
    verified: list[int],
    *,
    aborted: list[bool],
) -> Callable[[], BinaryIO]:
    def opener() -> BinaryIO:
        fd, rel = _open_blob(cas_fd, key, desc)
        blob = _CheckedBlob(fd, desc, rel, lambda: verified.append(index), aborted)
        return cast(BinaryIO, blob)

    return opener

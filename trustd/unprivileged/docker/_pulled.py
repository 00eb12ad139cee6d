"""The last step of every Docker fetch: squash what was pulled into one ACI in the store's
scratch space, admit it (signed: the evidence verified again from bytes; else the recorded
opt-out), let the policy's fetch gate decide, and store it with the blobs a signed image
keeps (docs/adr/0021)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from trustd.shared._dataclass import frozen
from trustd.shared.docker.convert import Origin, convert
from trustd.shared.store import ImageRecord, admit
from trustd.shared.store.admit import admit_docker_signed
from trustd.unprivileged.docker.reference import DockerRef
from trustd.unprivileged.docker.signatures import SignedImage

if TYPE_CHECKING:
    from trustd.unprivileged.docker.fetch import DockerFetch


@frozen
class Pulled:
    """What a fetch hands the squash: the config, layer openers, the origin, the source
    digest, the layers' diff_ids, and (a signed image) the blobs the store keeps."""

    config_bytes: bytes
    layers: tuple[Callable[[], BinaryIO], ...]
    origin: Origin
    source_digest: str
    diff_ids: tuple[str, ...]
    # a registry image: its config and layer blobs by digest (kept for a signed image)
    blobs: tuple[tuple[str, Path | bytes], ...] = ()


def file_opener(path: Path) -> Callable[[], BinaryIO]:
    return lambda: path.open("rb")


def convert_and_store(
    ref: DockerRef, pulled: Pulled, job: DockerFetch, signed: SignedImage | None = None
) -> ImageRecord:
    with job.store.scratch_file() as scratch:
        with scratch.open("wb") as out:
            converted = convert(
                pulled.layers,
                pulled.config_bytes,
                pulled.origin,
                out,
                label=ref.url,
                diff_ids=pulled.diff_ids,
                limits=job.squash_limits,
            )
        written = converted.info(ref.url)  # accounted for as written: not read back
        evidence: bytes | None = None
        blobs: dict[str, Path | bytes] = {}
        if signed is not None and job.signatures is not None:  # verified again, from bytes
            blobs = dict(pulled.blobs)  # root converts these again before it renders
            evidence = signed.evidence().encode()
            admitted = admit_docker_signed(
                scratch,
                evidence,
                job.signatures.keystore,
                identity=signed.rule,
                source=ref.url,
                inspected=written,
            )
        else:
            # keystore=None: the explicit, recorded opt-out that gate() allowed above
            admitted = admit(
                scratch,
                None,
                None,
                source=ref.url,
                source_digest=pulled.source_digest,
                inspected=written,
            )
        if job.admitted_gate is not None:
            job.admitted_gate(admitted)
        return job.store.put(admitted, scratch, evidence, source=ref.url, blobs=blobs)

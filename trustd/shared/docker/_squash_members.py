"""Read one Docker layer's tar members for both squash passes (private to :mod:`._squash`):
through the decompressor as a stream, or decompressed first into a scratch file and read there."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from contextlib import closing
from typing import BinaryIO, cast

from trustd.shared.appc._aci_scan import checked_tarinfo
from trustd.shared.docker._headers import next_member
from trustd.shared.docker._layers import LayerReader, Peeked, decompressed
from trustd.shared.docker._squash_model import Opener, SquashLimits


def _members(
    opener: Opener,
    budget: list[int],
    limits: SquashLimits,
    digests: list[str] | None = None,
    tee: BinaryIO | None = None,
) -> Iterator[tuple[int, tarfile.TarInfo, tarfile.TarFile]]:
    """Yield (ordinal, member, tar) for one layer; an empty blob is an empty layer.

    With ``digests``, the sha256 of the whole uncompressed layer is appended once it is read.
    With ``tee`` (an empty seekable file), the layer is first decompressed into it in large
    reads (counted and hashed the same way), then its headers are read from there, skipping
    file contents by seek: no per-record reads through the decompressor.
    """
    if tee is not None:
        yield from _members_via(tee, opener, budget, limits, digests)
        return
    with closing(opener()) as raw:
        reader = LayerReader(decompressed(raw), budget, tee)
        head = reader.read(512)
        if head:
            with tarfile.open(
                fileobj=cast(BinaryIO, Peeked(head, reader)),
                mode="r|",
                tarinfo=checked_tarinfo(limits.max_header_size),
                errors="surrogateescape",
            ) as tar:
                ordinal = 0
                while (member := tar.next()) is not None:
                    yield ordinal, member, tar
                    ordinal += 1
                    tar.members.clear()  # type: ignore[attr-defined]
        reader.drain()
        if digests is not None:
            digests.append(reader.digest())


def _members_via(
    tee: BinaryIO,
    opener: Opener,
    budget: list[int],
    limits: SquashLimits,
    digests: list[str] | None,
) -> Iterator[tuple[int, tarfile.TarInfo, tarfile.TarFile]]:
    with closing(opener()) as raw:
        reader = LayerReader(decompressed(raw), budget, tee)
        reader.drain(threaded=True)
    if digests is not None:
        digests.append(reader.digest())
    if reader.size == 0:
        return
    tee.flush()
    tee.seek(0)
    with tarfile.open(
        fileobj=tee,
        mode="r:",
        tarinfo=checked_tarinfo(limits.max_header_size),
        errors="surrogateescape",
    ) as tar:
        ordinal = 0
        while (member := next_member(tar)) is not None:  # tarfile's members, read leaner
            yield ordinal, member, tar
            ordinal += 1
            tar.members.clear()  # type: ignore[attr-defined]

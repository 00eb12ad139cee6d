"""``rkt image export``: the stored archive, uncompressed, from root's private copy of it."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from trustd.privileged._output import output_file
from trustd.privileged.treestore._copy import open_cas, private_copy
from trustd.privileged.treestore.render import ANY_NAME, Expected, check_requested
from trustd.shared.appc.aci import AciLimits, Sink, copy_uncompressed, inspect_aci
from trustd.shared.errors import LocalStateError
from trustd.shared.imageid import StoreKey


def export_image(
    data_dir: Path, key: StoreKey, output: Path, *, overwrite: bool, expected: Expected = ANY_NAME
) -> None:
    """``rkt image export``: the stored archive, uncompressed; read beneath ``cas`` by the
    checked full ID into a private copy, with no symlink followed. Asked for by name
    (``expected``), the copy's own manifest must say that name before anything is written."""
    cas = open_cas(data_dir)
    try:
        with tempfile.TemporaryDirectory(prefix=".trustd-export-") as work:
            original, _sig = private_copy(cas, key, Path(work))
            if expected != ANY_NAME:
                info = inspect_aci(original, limits=AciLimits())
                if info.image_id != key.id:
                    raise _altered(key)
                check_requested(key, info.manifest, expected)
            with output_file(output, overwrite=overwrite) as out:
                hashed = _Sha512Writer(out)
                copy_uncompressed(original, hashed)
                if hashed.digest() != key.digest:  # the group may have replaced the blob
                    raise _altered(key)
    finally:
        os.close(cas)


def _altered(key: StoreKey) -> LocalStateError:
    return LocalStateError(
        f"the stored archive of {key.id[:39]}… does not hash to its ID",
        hint=f"the store was altered; rkt image rm {key.id[:39]} and fetch it again",
    )


class _Sha512Writer:
    """Passes writes through, hashing them (an export is the image's uncompressed tar)."""

    def __init__(self, target: Sink) -> None:
        self.target, self.hash = target, hashlib.sha512()

    def write(self, block: bytes, /) -> object:
        self.hash.update(block)
        return self.target.write(block)

    def digest(self) -> str:
        return self.hash.hexdigest()

"""A stored image as its own bytes say: the archive re-read and hashed against the record's ID.

The blob directory's ``manifest`` file is a copy the group may rewrite (red team 8: a
member's forged ``exec`` was shown to root by ``cat-manifest``; red team 11: a forged
dependency was fetched by root's fetch child and entered root's record of the images it
fetched). What must be the image's own manifest is read from the archive, in the one pass
that hashes it.
"""

from __future__ import annotations

import os
import stat

from trustd.shared.appc.aci import AciError, AciInfo, AciLimits, inspect_aci
from trustd.shared.errors import LocalStateError
from trustd.shared.store._layout import ORIGINAL, StoreLayout, open_store_dir
from trustd.shared.store.model import ImageRecord

_REFUSAL = "the store was altered; remove the image (rkt image rm) and fetch it again"


def stored_info(layout: StoreLayout, record: ImageRecord) -> AciInfo:
    """The stored archive of ``record`` inspected (manifest, sizes, ID), once it hashes to the
    record's full ID: opened beneath the blob dir with no symlink followed and without
    waiting on a FIFO."""
    blob = layout.blob_dir(record.key)
    path = blob / ORIGINAL
    where = open_store_dir(layout.root, str(blob.relative_to(layout.root)))
    try:
        fd = os.open(ORIGINAL, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=where)
    except OSError as exc:
        raise LocalStateError(f"stored archive {path}: {exc.strerror}", hint=_REFUSAL) from exc
    finally:
        os.close(where)
    with os.fdopen(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LocalStateError(f"stored archive {path} is not a regular file", hint=_REFUSAL)
        try:
            info = inspect_aci(stream, limits=AciLimits(), name=str(path))
        except AciError as exc:
            raise LocalStateError(f"stored archive {path}: {exc}", hint=_REFUSAL) from exc
    if info.image_id != record.full_key.id:
        raise LocalStateError(
            f"the stored archive of {record.key[:39]}… does not hash to its ID", hint=_REFUSAL
        )
    return info

"""Store trustd's generated stage1 image (docs/adr/0018), as rkt stores the stage1 it runs.

Runs where fetches run (as root: in the unprivileged fetch child). The store's copy is for
``image list`` and ``image gc`` only; root never runs or measures from it.
"""

from __future__ import annotations

from trustd.shared.imageid import store_key
from trustd.shared.stage1image import SOURCE, Stage1Image
from trustd.shared.store import ImageStore
from trustd.shared.store.admit import admit_stage1


def store_stage1(store: ImageStore, image: Stage1Image) -> str:
    """Put ``image`` in the store once (later runs only mark it used); its store key."""
    store.ensure()
    key = store_key(image.image_id)  # the index's key column: touch() compares it exactly
    if store.index.by_key_prefix(key):
        store.index.touch(key)
        return key
    with store.scratch_file() as scratch:
        scratch.write_bytes(image.archive)
        record = store.put(admit_stage1(scratch, image), scratch, None, SOURCE)
    return record.key

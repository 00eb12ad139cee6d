"""``run`` and ``prepare`` store the stage1 image they use (docs/adr/0016), as rkt does."""

from __future__ import annotations

import os

from trustd.shared.config import GlobalOptions
from trustd.shared.vocab import Flavor


def store_stage1_image(options: GlobalOptions, flavor: Flavor) -> str:
    """Generate the flavor's stage1 ACI here (from the package data) and store it with the
    fetch side's rights; returns its store key."""
    from trustd.shared.stage1image import stage1_image  # noqa: PLC0415
    from trustd.shared.store import ImageStore  # noqa: PLC0415
    from trustd.unprivileged.fetch.stage1 import store_stage1  # noqa: PLC0415

    image = stage1_image(flavor)
    data = options.dirs.data
    if os.geteuid() != 0:
        return store_stage1(ImageStore.open(data, create=True), image)
    from trustd.privileged.treestore.datadir import prepare_store  # noqa: PLC0415
    from trustd.unprivileged.privsep import fetch_identity, require_reachable, run_as  # noqa: PLC0415

    prepare_store(data)
    identity = fetch_identity()
    store = ImageStore(data)

    def work() -> str:
        require_reachable(data, identity)
        return store_stage1(store, image)

    return run_as(identity, work, ("trustd.unprivileged.fetch.stage1", "trustd.shared.store.admit"))

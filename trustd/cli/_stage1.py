"""``run`` and ``prepare`` store the stage1 image they use (docs/adr/0018), as rkt does."""

from __future__ import annotations

import os

from trustd.shared.config import GlobalOptions
from trustd.shared.vocab import Flavor


def uses_the_store(images: list[str]) -> bool:
    """Whether the front end resolves an app through the store (a name, a file, a URL or a
    short ID). A run given only full image IDs touches no group-writable state, so a member
    holding the store's lock cannot delay it (issue #10); such a run does not store the
    stage1 image either."""
    from trustd.cli._apps import _split_apps  # noqa: PLC0415
    from trustd.shared.imageid import StoreKey  # noqa: PLC0415

    for app in _split_apps(images):
        try:
            StoreKey(app["image"])
        except ValueError:
            return True
    return False


def prefixes_only(images: list[str]) -> list[str] | None:
    """The image ID prefixes (``sha512-`` but not a full ID) when every app names one or a
    full ID, else None: a name, file or URL goes through the fetch path instead."""
    from trustd.cli._apps import _split_apps  # noqa: PLC0415
    from trustd.shared.imageid import StoreKey  # noqa: PLC0415

    prefixes = []
    for app in _split_apps(images):
        ref = app["image"]
        if not ref.startswith("sha512-"):
            return None
        try:
            StoreKey(ref)
        except ValueError:
            prefixes.append(ref)
    return prefixes


def stage1_key(flavor: Flavor) -> str:
    """The index key of ``flavor``'s stage1 image (its ID's first 64 hex)."""
    from trustd.shared.imageid import store_key  # noqa: PLC0415
    from trustd.shared.stage1image import stage1_image  # noqa: PLC0415

    return store_key(stage1_image(flavor).image_id)


def store_stage1_image(options: GlobalOptions, flavor: Flavor) -> str:
    """Generate the flavor's stage1 ACI here (from the package data) and store it with the
    fetch side's rights; returns its store key."""
    from trustd.shared.imageid import store_key  # noqa: PLC0415
    from trustd.shared.stage1image import stage1_image  # noqa: PLC0415
    from trustd.shared.store import ImageStore  # noqa: PLC0415

    image = stage1_image(flavor)
    data = options.dirs.data
    if os.geteuid() != 0:
        from trustd.unprivileged.fetch.stage1 import store_stage1  # noqa: PLC0415

        return store_stage1(ImageStore.open(data, create=True), image)
    from trustd.cli._store import _LOOKUP  # noqa: PLC0415
    from trustd.privileged.treestore.datadir import prepare_store  # noqa: PLC0415
    from trustd.unprivileged.privsep import fetch_identity, require_reachable, run_as  # noqa: PLC0415
    from trustd.unprivileged.privsep.drop import INDEX_PRELOAD  # noqa: PLC0415

    prepare_store(data)
    identity = fetch_identity()
    key = store_key(image.image_id)  # the index's key column (64 hex), compared exactly

    def stamp() -> str:
        """Every run after the first: the index has it, its last use is stamped."""
        require_reachable(data, identity)
        store = ImageStore.open(data, create=True)
        with store.index.session():  # one connection, one commit
            if store.index.by_key_prefix(key):
                store.index.touch(key)
                return key
        return ""

    # The index lookup child is given the index code only, not the fetch side's TLS, HTTP and
    # archive modules (~100 ms of imports, issue #14); only a miss pays for those.
    if run_as(identity, stamp, _LOOKUP, inherit_fds=False, base=INDEX_PRELOAD) == key:
        return key
    from trustd.unprivileged.fetch.stage1 import store_stage1  # noqa: PLC0415

    store = ImageStore(data)

    def work() -> str:
        require_reachable(data, identity)
        return store_stage1(store, image)

    return run_as(identity, work, ("trustd.unprivileged.fetch.stage1", "trustd.shared.store.admit"))

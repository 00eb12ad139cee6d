"""Root's part of ``rkt image gc`` and ``rkt image rm`` (ADR 0010): trees and stamps only.

The front end does the index and blob part with the group's rights (trustd/cli/_store.py);
these steps, entered through the root program, do what needs root: reading which images the
pods reference (their plans are root's) and root's last-use stamps before, and removing the
rendered trees and stamps nobody needs after. Both of the later steps run under the tree lock
held alone and read the pods' references again there, so a pod prepared meanwhile keeps its
tree whatever the front end reported.
"""

from __future__ import annotations

from collections.abc import Iterable

from trustd.privileged.executor.references import pods_on_legacy_trees, referenced_images
from trustd.privileged.treestore.datadir import (
    DataDir,
    forget_used,
    sweep_store_tmp,
    tree_lock,
    used_stamps,
)
from trustd.privileged.treestore.render import (
    remove_legacy_trees,
    remove_render_locks,
    remove_tree,
    tree_names,
)
from trustd.shared.imageid import StoreKey
from trustd.shared.request import ImageUse, pods_using


def image_use(data: DataDir) -> ImageUse:
    """What the pods reference and when root last used each image (gc's grace counts from it)."""
    with tree_lock(data, exclusive=False):
        refs = referenced_images(data.path)
        return ImageUse(
            {key: tuple(uuids) for key, uuids in refs.items()},
            used_stamps(data),
        )


def _is_key(name: str) -> bool:
    try:
        StoreKey(name)
    except ValueError:
        return False
    return True


def collect_trees(data: DataDir, remaining: Iterable[str]) -> None:
    """After the index part of gc: trees and stamps of images neither still in the store
    (``remaining``, full IDs) nor referenced by a pod go; stale render stages, the old
    ``cas/tree`` (once no pod of an older trustd uses it) and killed imports too."""
    with tree_lock(data, exclusive=True):
        needed = set(referenced_images(data.path)) | {StoreKey.parse(i).id for i in remaining}
        for name in tree_names(data):
            if name.startswith(".render-") or (_is_key(name) and name not in needed):
                remove_tree(data, name)  # stale stages: no render runs under this lock
        remove_render_locks(data)
        for full in set(used_stamps(data)) - needed:  # removed now, or by the group before
            forget_used(data, StoreKey.parse(full))
        if not pods_on_legacy_trees(data.path):
            remove_legacy_trees(data)
        sweep_store_tmp(data)


def remove_trees(data: DataDir, images: Iterable[str]) -> None:
    """After ``image rm`` removed ``images`` (full IDs) from the index: their trees and
    stamps, unless a pod prepared since references the image."""
    with tree_lock(data, exclusive=True):
        refs = referenced_images(data.path)
        for image in images:
            key = StoreKey.parse(image)
            if not pods_using(refs, key.id):
                remove_tree(data, key.id)
                forget_used(data, key)

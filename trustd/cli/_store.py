"""The store index as the front end uses it: with the group's rights, never root's.

Root never opens the SQLite index (the group writes it, and its files sit in a directory
the group controls). As root, the front end makes the store's directories (no symlink
followed, trustd.privileged.treestore.datadir) and runs whatever reads or changes the index
in the unprivileged privsep child (group rkt), which hands back only a string: e.g. an
image's full ID, which root then checks against the exact grammar before any use.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from trustd.shared.config import GlobalOptions
from trustd.shared.imageid import is_id_ref
from trustd.shared.store import StoreKey

_MODULES = (
    "trustd.shared.store.store",
    "trustd.shared.store._index",
    "trustd.shared.appc.manifest",
    "trustd.shared.appc.aci",
)
# A lookup by ID prefix or name (``rkt run``/``prepare``): the index code and sqlite only.
_LOOKUP = ("trustd.shared.store.store", "trustd.shared.store._index")


# The largest answer a child may give: a listing of 100,000 images fits.
LISTING_LIMIT = 64 << 20


def as_group(
    options: GlobalOptions,
    work: Callable[[], str],
    *,
    lookup: bool = False,
    listing: bool = False,
    names: bool = True,
    preload: tuple[str, ...] = (),
) -> str:
    """``work()`` with the store opened by the group: in-process when not root, else in the
    dropped child, after root made the directories. ``lookup``: ``work`` only reads or
    stamps index rows, so the child is given the index code alone, not the fetch side's
    (and killed past the lookup's deadline; any other child past :data:`STORE_DEADLINE`).
    ``listing``: a lookup whose answer may be up to :data:`LISTING_LIMIT` bytes, not 1 MiB
    (``image list``). ``preload``: modules ``work`` needs beyond those, loaded before the
    fork (e.g. the fingerprint spelling when the signers are listed). ``names=False``:
    ``work`` resolves image IDs only, never a name, so root's record of the images it
    fetched (which orders a name's images) is not read for it (:func:`_pin_root_fetched`)."""
    if os.geteuid() != 0:
        return work()
    from trustd.privileged.treestore.datadir import prepare_store  # noqa: PLC0415
    from trustd.unprivileged.privsep import fetch_identity, run_as  # noqa: PLC0415
    from trustd.unprivileged.privsep.drop import (  # noqa: PLC0415
        INDEX_PRELOAD,
        LISTING_PRELOAD,
        LOOKUP_DEADLINE,
        PRELOAD,
        STORE_DEADLINE,
    )

    prepare_store(options.dirs.data)
    if names and not listing:  # a name's images are ordered by root's record
        _pin_root_fetched(options)
    if lookup or listing:
        limit = LISTING_LIMIT if listing else 1 << 20
        modules = (*_LOOKUP, *preload)
        return run_as(
            fetch_identity(),
            work,
            modules,
            inherit_fds=False,
            base=LISTING_PRELOAD if listing else INDEX_PRELOAD,
            limit=limit,
            deadline=LOOKUP_DEADLINE,
        )
    return run_as(
        fetch_identity(),
        work,
        (*_MODULES, *preload),
        inherit_fds=False,
        base=PRELOAD,
        deadline=STORE_DEADLINE,  # red team 8: a held store lock hung image rm and gc
    )


def _pin_root_fetched(options: GlobalOptions) -> None:
    """As root, before forking a child that reads the index: the images of a name are
    ordered by root's own record of the images its fetches admitted, not by the index's
    import times, which the group writes (trustd.shared.store._index.pin_fetched)."""
    from trustd.privileged.treestore.datadir import open_data_dir, root_fetched  # noqa: PLC0415
    from trustd.shared.store._index import pin_fetched  # noqa: PLC0415

    with open_data_dir(options.dirs.data) as data:
        pin_fetched(root_fetched(data))


def as_group_to_the_end(
    options: GlobalOptions, work: Callable[[], str], *, preload: tuple[str, ...] = ()
) -> str:
    """:func:`as_group` with ``listing``, for a verb whose last step it is: as root, after
    root made the directories, this process itself drops to the group's identity for good
    (trustd.unprivileged.privsep.drop_for_good) and runs ``work`` there, so no child, pipe
    or JSON round trip is needed (``rkt image list``, issue #14). The guarantee is the
    child's: root never opens the index, and nothing runs as root afterwards. A caller of
    ``main()`` that goes on afterwards (tests, an embedding) gets :func:`as_group`'s child."""
    from trustd.cli._common import ends_with_main  # noqa: PLC0415

    if os.geteuid() != 0:
        return work()
    if not ends_with_main():
        return as_group(options, work, listing=True, preload=preload)
    from trustd.privileged.treestore.datadir import prepare_store  # noqa: PLC0415
    from trustd.unprivileged.privsep import drop_for_good, fetch_identity  # noqa: PLC0415
    from trustd.unprivileged.privsep.drop import LISTING_PRELOAD  # noqa: PLC0415

    prepare_store(options.dirs.data)
    # --debug prints a failure's traceback, after the drop: its module is loaded before
    debug = ("traceback",) if options.debug else ()
    drop_for_good(fetch_identity(), (*_LOOKUP, *preload, *debug), base=LISTING_PRELOAD)
    return work()


def _named_by(ref: str, key: StoreKey) -> StoreKey:
    """``key`` when ``ref`` is a name or a prefix of it; else the lookup lied (red team 4: a
    view the group put in place of the index table evaluates its columns again for the
    answer, so the row that matched the prefix need not be the row answered)."""
    from trustd.shared.errors import LocalStateError  # noqa: PLC0415

    if ref.startswith("sha512-") and not key.id.startswith(ref.lower()):
        raise LocalStateError(
            f"the store index answered {key.id[:19]}... for image ID {ref!r}, which it does "
            "not start with",
            hint="a member of group rkt may have altered the index; see: rkt image list",
        )
    return key


def full_key(options: GlobalOptions, ref: str, *, touch: bool = False) -> StoreKey:
    """The full image ID for ``ref`` (an ID prefix or name[:version]), resolved in the index
    with the group's rights and checked against the exact grammar. With ``touch`` (run and
    prepare), the index's last-used time is updated there too (root keeps its own stamp)."""
    from trustd.shared.store import ImageStore  # noqa: PLC0415

    data = options.dirs.data

    def work() -> str:
        store = ImageStore.open(data, create=True)
        if not touch:
            return store.resolve(ref).full_key.id
        with store.index.session():  # one connection, one commit
            record = store.resolve(ref)
            store.index.touch(record.key)
            return record.full_key.id

    answer = as_group(options, work, lookup=True, names=not is_id_ref(ref))
    return _named_by(ref, StoreKey.parse(answer))


def run_keys(
    options: GlobalOptions, refs: list[str], stage1_key: str | None
) -> tuple[dict[str, StoreKey], bool]:
    """For ``rkt run`` by image ID prefixes (as ``fetch --full`` prints them): each prefix's
    full ID, each stamped as used, and the stage1 image's row stamped, in one lookup child
    instead of one per image and one for the stage1, on one index connection and in one
    transaction (issue #14: each stamp was an autocommit, an fsync of the WAL).

    The refs are resolved in order, as :func:`full_key` would one by one; at the first that
    fails the child stops and answers the ones before it, so the caller's :func:`full_key`
    for the failing one raises its error as before. The stage1's row is stamped only when
    every ref resolved; the answer says whether it was there. What comes back is decoded
    strictly, each ID checked against the exact grammar, and only for refs asked about."""
    from trustd.shared.errors import LocalStateError, TrustdError  # noqa: PLC0415
    from trustd.shared.store import ImageStore  # noqa: PLC0415

    data = options.dirs.data

    def work() -> str:
        store = ImageStore.open(data, create=True)
        with store.index.session():  # one connection, one commit: one fsync, not one a stamp
            return json.dumps(_stamp_all(store))

    def _stamp_all(store: ImageStore) -> dict[str, Any]:
        found: dict[str, str] = {}
        for ref in refs:
            try:
                record = store.resolve(ref)
            except TrustdError:
                return {"keys": found, "stage1": False}
            store.index.touch(record.key)
            found[ref] = record.full_key.id
        stamped = bool(stage1_key) and bool(store.index.by_key_prefix(stage1_key or ""))
        if stamped and stage1_key:
            store.index.touch(stage1_key)
        return {"keys": found, "stage1": stamped}

    by_name = not all(is_id_ref(ref) for ref in refs)
    answer = json.loads(as_group(options, work, lookup=True, names=by_name))
    keys, stamped = answer.get("keys"), answer.get("stage1")
    if (
        not isinstance(keys, dict)
        or not isinstance(stamped, bool)
        or not set(keys) <= set(refs)
        or not all(isinstance(v, str) for v in keys.values())
    ):
        raise LocalStateError(
            "the store index lookup answered with something other than image IDs",
            hint="a member of group rkt may have altered the index; see: rkt image list",
        )
    return {ref: _named_by(ref, StoreKey.parse(key)) for ref, key in keys.items()}, stamped


def records(options: GlobalOptions, ref: str | None = None) -> list[Any]:
    """Index records (every image, or the one ``ref`` names), read with the group's rights
    and decoded strictly on this side (``rkt policy explain/audit``)."""
    from trustd.shared.errors import LocalStateError  # noqa: PLC0415
    from trustd.shared.store import ImageStore  # noqa: PLC0415
    from trustd.shared.store.model import ImageRecord  # noqa: PLC0415

    data = options.dirs.data

    def work() -> str:
        store = ImageStore.open(data)
        found = [store.resolve(ref)] if ref is not None else store.images()
        return json.dumps([r.to_json() for r in found])

    try:
        by_name = ref is not None and not is_id_ref(ref)
        answer = json.loads(as_group(options, work, names=by_name))
        return [ImageRecord.from_json(obj) for obj in answer]
    except ValueError as exc:
        raise LocalStateError(
            f"the store index answered with a record that does not decode: {exc}",
            hint="a member of group rkt may have altered the index; see: rkt image list",
        ) from exc

"""``rkt image list | rm | cat-manifest | export | gc``: the store as rkt showed it."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from trustd.cli._common import add_format_flag, is_json, json_text, table_text
from trustd.cli._store import as_group, full_key
from trustd.shared.config import GlobalOptions
from trustd.shared.errors import UserError

FIELDS = ("id", "name", "size", "importtime", "lastused", "signers", "source")
SORT_FIELDS = ("name", "importtime", "lastused", "size")


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    ls = sub.add_parser(
        "image-list",
        parents=parents,
        prog="rkt image list",
        help="list images in the store (rkt image list)",
    )
    ls.add_argument("--fields", default="id,name,size,importtime,lastused")
    ls.add_argument("--sort", default="importtime")
    ls.add_argument("--order", choices=("asc", "desc"), default="asc")
    ls.add_argument("--no-legend", action="store_true")
    ls.add_argument("--full", action="store_true")
    add_format_flag(ls)
    ls.set_defaults(func=run_list)
    rm = sub.add_parser(
        "image-rm",
        parents=parents,
        prog="rkt image rm",
        help="remove images from the store (rkt image rm)",
    )
    rm.add_argument("images", nargs="+")
    rm.set_defaults(func=run_rm)
    cat = sub.add_parser(
        "image-cat-manifest",
        parents=parents,
        prog="rkt image cat-manifest",
        help="print an image's manifest (rkt image cat-manifest)",
    )
    cat.add_argument("--pretty-print", default=True, type=lambda v: v.lower() != "false")
    cat.add_argument("image")
    cat.set_defaults(func=run_cat_manifest)
    ex = sub.add_parser(
        "image-export",
        parents=parents,
        prog="rkt image export",
        help="export an image as an uncompressed ACI (rkt image export)",
    )
    ex.add_argument("--overwrite", action="store_true")
    ex.add_argument("image")
    ex.add_argument("output", type=Path)
    ex.set_defaults(func=run_export)
    for verb, what in (("render", "the rootfs as the app sees it"), ("extract", "raw contents")):
        r = sub.add_parser(
            f"image-{verb}",
            parents=parents,
            prog=f"rkt image {verb}",
            help=f"verify an image again and write {what} to DIR",
        )
        r.add_argument("--rootfs-only", action="store_true")
        r.add_argument("--overwrite", action="store_true")
        r.add_argument("image")
        r.add_argument("target", type=Path, metavar="DIR")
        r.set_defaults(func=run_render)
    gc = sub.add_parser(
        "image-gc", parents=parents, prog="rkt image gc", help="remove unused images (rkt image gc)"
    )
    gc.add_argument("--grace-period", default="24h0m0s", type=parse_duration)
    gc.set_defaults(func=run_gc)


def parse_duration(text: str) -> timedelta:
    """Go-style durations as rkt took them: ``24h0m0s``, ``90m``, ``10s``, ``0``."""
    if text == "0":
        return timedelta(0)
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise UserError(f"invalid duration {text!r}", hint="use e.g. 24h0m0s, 30m or 10s")
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    try:
        return timedelta(seconds=sum(float(n) * units[u] for n, u in parts))
    except OverflowError as exc:
        raise UserError(f"duration {text!r} is too long", hint="use e.g. 24h0m0s") from exc


def _store(options: GlobalOptions) -> Any:
    """The store, opened with the caller's rights (call it inside :func:`as_group`)."""
    from trustd.shared.store import ImageStore  # noqa: PLC0415

    return ImageStore.open(options.dirs.data, create=True)  # as rkt: the store is made on use


def _signers(record: Any) -> list[str]:
    from trustd.shared.verify import format_fingerprint  # noqa: PLC0415

    return [format_fingerprint(s) for s in record.provenance.signers]


def _row(record: Any, full: bool) -> dict[str, str]:
    """A table row: every cell a string."""
    key = record.key if full else record.key[: len("sha512-") + 32]
    return {
        "id": key,
        "name": record.name + (f":{v}" if (v := record.label("version")) else ""),
        "size": str(record.size),
        "importtime": record.import_time.isoformat(timespec="seconds"),
        "lastused": record.last_used.isoformat(timespec="seconds"),
        "signers": ",".join(_signers(record)) or ("insecure" if record.provenance.insecure else ""),
        "source": record.source,
    }


def _json_row(record: Any) -> dict[str, Any]:
    """A JSON object: typed values (sizes are integers, times RFC 3339, signers a list)."""
    provenance = {**record.provenance.to_json(), "signers": _signers(record)}
    return {
        "id": record.key,
        "name": record.name + (f":{v}" if (v := record.label("version")) else ""),
        "size": record.size,
        "importtime": record.import_time.isoformat(timespec="seconds"),
        "lastused": record.last_used.isoformat(timespec="seconds"),
        "signers": _signers(record),
        "insecure": record.provenance.insecure,
        "source": record.source,
        "provenance": provenance,
    }


def _listing(args: argparse.Namespace) -> str:
    fields = args.fields.split(",")
    sort_key = {
        "name": lambda r: r.name,
        "importtime": lambda r: r.import_time,
        "lastused": lambda r: r.last_used,
        "size": lambda r: r.size,
    }[args.sort]
    records = sorted(_store(args.options).images(), key=sort_key, reverse=args.order == "desc")
    if is_json(args.format):
        return json_text([_json_row(r) for r in records], args.format)
    rows = [[_row(r, args.full)[f] for f in fields] for r in records]
    return table_text(rows, None if args.no_legend else [f.upper() for f in fields])


def run_list(args: argparse.Namespace) -> int:
    fields = args.fields.split(",")
    if bad := [f for f in fields if f not in FIELDS]:
        raise UserError(f"unknown field(s) {', '.join(bad)}", hint=f"fields: {', '.join(FIELDS)}")
    if args.sort not in SORT_FIELDS:
        raise UserError(f"unknown sort field {args.sort!r}", hint=f"use: {', '.join(SORT_FIELDS)}")
    text = as_group(args.options, lambda: _listing(args))
    if text:
        print(text)
    return 0


def _refuse_referenced(options: GlobalOptions, full_id: str) -> None:
    from trustd.privileged.executor.references import pods_using, referenced_images  # noqa: PLC0415

    if using := pods_using(referenced_images(options.dirs.data), full_id):
        raise UserError(
            f'image "{full_id[:39]}" is used by pod(s) {", ".join(using)}',
            hint="remove the pods first (rkt rm UUID, or rkt gc once they exited)",
        )


def _remove_one(options: GlobalOptions, key: Any) -> str:
    def work() -> str:
        store = _store(options)
        record = store.resolve(key.id)
        store.remove(record)
        return str(record.key)

    if os.geteuid() != 0:
        _refuse_referenced(options, key.id)
        return work()
    from trustd.privileged.treestore.datadir import (  # noqa: PLC0415
        forget_used,
        open_data_dir,
        tree_lock,
    )
    from trustd.privileged.treestore.render import remove_tree  # noqa: PLC0415

    # under the tree lock: no prepare can start referencing the image meanwhile
    with open_data_dir(options.dirs.data) as data, tree_lock(data, exclusive=True):
        _refuse_referenced(options, key.id)
        short = as_group(options, work)
        remove_tree(data, key.id)  # root's state about it: its tree and last-used stamp
        forget_used(data, key)
    return short


def run_rm(args: argparse.Namespace) -> int:
    options: GlobalOptions = args.options
    removed = 0
    for ref in args.images:
        short = _remove_one(options, full_key(options, ref))
        print(f'successfully removed aci for image: "{short}"')
        removed += 1
    print(f"rm: {removed} image(s) successfully removed", file=sys.stderr)
    return 0


def run_cat_manifest(args: argparse.Namespace) -> int:
    from trustd.shared.appc.manifest import parse_image_manifest  # noqa: PLC0415
    from trustd.shared.store._layout import MANIFEST  # noqa: PLC0415

    def work() -> str:
        store = _store(args.options)
        record = store.resolve(args.image)
        path = store.layout.blob_dir(record.key) / MANIFEST
        manifest = parse_image_manifest(path.read_bytes(), source=str(path))
        obj = json.loads(manifest.to_json())
        return json.dumps(obj, indent=2 if args.pretty_print else None)

    print(as_group(args.options, work))
    return 0


def run_export(args: argparse.Namespace) -> int:
    """The stored archive, uncompressed; read beneath ``cas`` by the checked full ID, with
    no symlink followed (as root too)."""
    from trustd.privileged.treestore.render import open_cas, private_copy  # noqa: PLC0415
    from trustd.shared.appc.aci import copy_uncompressed  # noqa: PLC0415

    key = full_key(args.options, args.image)
    if args.output.exists() and not args.overwrite:
        raise UserError(f"{args.output} already exists", hint="pass --overwrite")
    cas = open_cas(args.options.dirs.data)
    try:
        with tempfile.TemporaryDirectory(prefix=".trustd-export-") as work:
            original, _sig = private_copy(cas, key, Path(work))
            with args.output.open("wb") as out:
                copy_uncompressed(original, out)
    finally:
        os.close(cas)
    return 0


def run_render(args: argparse.Namespace) -> int:
    """render and extract run in the root program, which re-verifies a private copy first
    (trustd.privileged.treestore.render); the image is named there by its full key."""
    from trustd.cli._handoff import exec_root, require_root  # noqa: PLC0415
    from trustd.shared.insecure import Insecure  # noqa: PLC0415
    from trustd.shared.request import Render  # noqa: PLC0415

    require_root()
    options: GlobalOptions = args.options
    request = Render(
        "render",
        full_key(options, args.image).id,
        str(args.target.absolute()),
        rootfs_only=args.rootfs_only,
        overwrite=args.overwrite,
        allow_insecure=Insecure.IMAGE in options.insecure,
    )
    exec_root(options, args.command.removeprefix("image-"), request)


def _collect(options: GlobalOptions, grace: timedelta, keep: set[str], stamps: Any) -> str:
    """Blob and index removal, with the group's rights: JSON {removed, remaining}."""
    store = _store(options)
    removed = store.gc(grace, keep=keep, last_used=stamps)
    return json.dumps(
        {
            "removed": [[r.key, r.name, r.full_key.id] for r in removed],
            "remaining": [r.full_key.id for r in store.images()],
        }
    )


def run_gc(args: argparse.Namespace) -> int:
    """Images unused for the grace period (from their last use) and referenced by no pod go;
    as root, root then removes the rendered trees no image or pod needs any more."""
    from trustd.privileged.executor.references import referenced_images  # noqa: PLC0415

    options: GlobalOptions = args.options
    if os.geteuid() != 0:
        keep = set(referenced_images(options.dirs.data))
        result = json.loads(_collect(options, args.grace_period, keep, {}))
    else:
        result = _root_gc(options, args.grace_period)
    for key, name, _full in result["removed"]:
        print(f'gc: removed image "{key}" ({name})')
    return 0


def _root_gc(options: GlobalOptions, grace: timedelta) -> Any:
    from trustd.privileged.executor.references import (  # noqa: PLC0415
        pods_on_legacy_trees,
        referenced_images,
    )
    from trustd.privileged.treestore.datadir import (  # noqa: PLC0415
        forget_used,
        open_data_dir,
        sweep_store_tmp,
        tree_lock,
        used_stamps,
    )
    from trustd.privileged.treestore.render import (  # noqa: PLC0415
        remove_legacy_trees,
        remove_tree,
        tree_names,
    )
    from trustd.shared.store import StoreKey  # noqa: PLC0415

    with open_data_dir(options.dirs.data) as data, tree_lock(data, exclusive=True):
        keep = set(referenced_images(options.dirs.data))
        stamps = used_stamps(data)
        result = json.loads(as_group(options, lambda: _collect(options, grace, keep, stamps)))
        needed = keep | {StoreKey.parse(full).id for full in result["remaining"]}
        for name in tree_names(data):
            if name.startswith(".render-") or (_is_key(name) and name not in needed):
                remove_tree(data, name)  # stale stages: no render runs under this lock
        for full in set(stamps) - needed:  # removed now, or by the group before
            forget_used(data, StoreKey.parse(full))
        if not pods_on_legacy_trees(options.dirs.data):
            remove_legacy_trees(data)
        sweep_store_tmp(data)
    return result


def _is_key(name: str) -> bool:
    from trustd.shared.store import StoreKey  # noqa: PLC0415

    try:
        StoreKey(name)
    except ValueError:
        return False
    return True

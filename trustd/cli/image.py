"""``rkt image list | rm | cat-manifest | export | gc``: the store as rkt showed it."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from trustd.cli._common import print_table
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
    ls.add_argument("--format", choices=("table", "json"), default="table")
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
    return timedelta(seconds=sum(float(n) * units[u] for n, u in parts))


def _store(options: GlobalOptions) -> Any:
    from trustd.shared.store import ImageStore  # noqa: PLC0415

    return ImageStore.open(options.dirs.data, create=True)  # as rkt: the store is made on use


def _row(record: Any, full: bool) -> dict[str, str]:
    key = record.key if full else record.key[: len("sha512-") + 32]
    return {
        "id": key,
        "name": record.name + (f":{v}" if (v := record.label("version")) else ""),
        "size": str(record.size),
        "importtime": record.import_time.isoformat(timespec="seconds"),
        "lastused": record.last_used.isoformat(timespec="seconds"),
        "signers": ",".join(record.provenance.signers)
        or ("insecure" if record.provenance.insecure else ""),
        "source": record.source,
    }


def run_list(args: argparse.Namespace) -> int:
    fields = args.fields.split(",")
    if bad := [f for f in fields if f not in FIELDS]:
        raise UserError(f"unknown field(s) {', '.join(bad)}", hint=f"fields: {', '.join(FIELDS)}")
    if args.sort not in SORT_FIELDS:
        raise UserError(f"unknown sort field {args.sort!r}", hint=f"use: {', '.join(SORT_FIELDS)}")
    sort_key = {
        "name": lambda r: r.name,
        "importtime": lambda r: r.import_time,
        "lastused": lambda r: r.last_used,
        "size": lambda r: r.size,
    }[args.sort]
    records = sorted(_store(args.options).images(), key=sort_key, reverse=args.order == "desc")
    if args.format == "json":
        print(
            json.dumps(
                [{**_row(r, True), "provenance": r.provenance.to_json()} for r in records], indent=2
            )
        )
        return 0
    rows = [[_row(r, args.full)[f] for f in fields] for r in records]
    print_table(rows, None if args.no_legend else [f.upper() for f in fields])
    return 0


def run_rm(args: argparse.Namespace) -> int:
    store = _store(args.options)
    removed = 0
    for ref in args.images:
        record = store.resolve(ref)
        store.remove(record)
        print(f'successfully removed aci for image: "{record.key}"')
        removed += 1
    print(f"rm: {removed} image(s) successfully removed", file=sys.stderr)
    return 0


def run_cat_manifest(args: argparse.Namespace) -> int:
    from trustd.shared.appc.manifest import parse_image_manifest  # noqa: PLC0415
    from trustd.shared.store._layout import MANIFEST  # noqa: PLC0415

    store = _store(args.options)
    record = store.resolve(args.image)
    path = store.layout.blob_dir(record.key) / MANIFEST
    manifest = parse_image_manifest(path.read_bytes(), source=str(path))
    obj = json.loads(manifest.to_json())
    print(json.dumps(obj, indent=2 if args.pretty_print else None))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from trustd.shared.appc.aci import copy_uncompressed  # noqa: PLC0415

    store = _store(args.options)
    record = store.resolve(args.image)
    if args.output.exists() and not args.overwrite:
        raise UserError(f"{args.output} already exists", hint="pass --overwrite")
    original, _sig = store.original(record)
    with args.output.open("wb") as out:
        copy_uncompressed(original, out)
    return 0


def run_render(args: argparse.Namespace) -> int:
    """render and extract run in the root program, which re-verifies a private copy first
    (trustd.privileged.treestore.render); the image is named there by its full key."""
    from trustd.cli._apps import full_id  # noqa: PLC0415
    from trustd.cli._handoff import exec_root, require_root  # noqa: PLC0415
    from trustd.shared.insecure import Insecure  # noqa: PLC0415
    from trustd.shared.request import Render  # noqa: PLC0415

    require_root()
    options: GlobalOptions = args.options
    request = Render(
        "render",
        full_id(args.image, options),
        str(args.target.absolute()),
        rootfs_only=args.rootfs_only,
        overwrite=args.overwrite,
        allow_insecure=Insecure.IMAGE in options.insecure,
    )
    exec_root(options, args.command.removeprefix("image-"), request)


def run_gc(args: argparse.Namespace) -> int:
    store = _store(args.options)
    for record in store.gc(args.grace_period):
        print(f'gc: removed image "{record.key}" ({record.name})')
    return 0

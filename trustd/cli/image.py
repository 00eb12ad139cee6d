"""``rkt image list | rm | cat-manifest | export | gc``: the store as rkt showed it."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from pathlib import Path
from typing import Any

from trustd.cli._common import add_format_flag, is_json, json_text
from trustd.cli._format import go_json, go_time, humanize, ibytes, tab_columns, unix_nanos
from trustd.cli._store import as_group, as_group_to_the_end, full_key
from trustd.shared.config import GlobalOptions
from trustd.shared.errors import UserError, printable
from trustd.shared.imageid import StoreKey, is_id_ref

# rkt's columns (rkt/image_list.go), then trustd's two extras
FIELDS = ("id", "name", "size", "importtime", "lastused", "signers", "source")
DEFAULT_FIELDS = "id,name,size,importtime,lastused"
SORT_FIELDS = ("name", "importtime", "lastused", "size")
HEADERS = {
    "id": "ID",
    "name": "NAME",
    "size": "SIZE",
    "importtime": "IMPORT TIME",
    "lastused": "LAST USED",
    "signers": "SIGNERS",
    "source": "SOURCE",
}
SHORT_ID = len("sha512-") + 12  # rkt's trimImageID: the algorithm and 12 hex digits


def option_list(allowed: tuple[str, ...], flag: str) -> Any:
    """rkt's OptionList: comma-separated, any case, each option once."""

    def parse(text: str) -> list[str]:
        options: list[str] = []
        for option in text.lower().split(",") if text else []:
            if option not in allowed:
                raise UserError(
                    f"invalid argument {text!r} for {flag}: unknown option {option!r}",
                    hint=f"accepted values: {', '.join(allowed)}",
                )
            if option in options:
                raise UserError(
                    f"invalid argument {text!r} for {flag}: duplicated option {option!r}",
                    hint="name each option once",
                )
            options.append(option)
        return options

    return parse


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    ls = sub.add_parser(
        "image-list",
        parents=parents,
        prog="rkt image list",
        help="list images in the store (rkt image list)",
    )
    ls.add_argument(
        "--fields",
        default=DEFAULT_FIELDS,
        type=option_list(FIELDS, "--fields"),
        help="comma-separated list of fields to display. Accepted values: "
        + ", ".join(FIELDS)
        + f" (default {DEFAULT_FIELDS})",
    )
    ls.add_argument(
        "--sort",
        default="importtime",
        type=option_list(SORT_FIELDS, "--sort"),
        help="sort the output according to the provided comma-separated list of fields. "
        "Accepted values: " + ", ".join(SORT_FIELDS) + " (default importtime)",
    )
    ls.add_argument(
        "--order",
        type=str.lower,
        choices=("asc", "desc"),
        default="asc",
        help="choose the sorting order if at least one sort field is provided (--sort): "
        "asc or desc (default asc)",
    )
    ls.add_argument("--no-legend", action="store_true", help="suppress a legend with the list")
    ls.add_argument(
        "--full", action="store_true", help="use long output format (the full image ID)"
    )
    add_format_flag(ls)
    ls.set_defaults(func=run_list)
    rm = sub.add_parser(
        "image-rm",
        parents=parents,
        prog="rkt image rm",
        help="remove images from the store (rkt image rm)",
    )
    rm.add_argument("images", nargs="+", help="image IDs (unique prefixes) or names")
    rm.set_defaults(func=run_rm)
    cat = sub.add_parser(
        "image-cat-manifest",
        parents=parents,
        prog="rkt image cat-manifest",
        help="print an image's manifest (rkt image cat-manifest)",
    )
    cat.add_argument(
        "--pretty-print",
        action="store_true",
        default=True,
        help="apply indent to format the output (default true)",
    )
    cat.add_argument("image", help="image ID (a unique prefix) or name")
    cat.set_defaults(func=run_cat_manifest)
    ex = sub.add_parser(
        "image-export",
        parents=parents,
        prog="rkt image export",
        help="export an image as an uncompressed ACI (rkt image export)",
    )
    ex.add_argument("--overwrite", action="store_true", help="overwrite the output ACI")
    ex.add_argument("image", help="image ID (a unique prefix) or name")
    ex.add_argument("output", type=Path, help="the ACI file to write")
    ex.set_defaults(func=run_export)
    for verb, what in (("render", "the rootfs as the app sees it"), ("extract", "raw contents")):
        r = sub.add_parser(
            f"image-{verb}",
            parents=parents,
            prog=f"rkt image {verb}",
            help=f"verify an image again and write {what} to DIR",
        )
        r.add_argument(
            "--rootfs-only", action="store_true", help="write only the rootfs, not the manifest"
        )
        r.add_argument("--overwrite", action="store_true", help="overwrite the output directory")
        r.add_argument("image", help="image ID (a unique prefix) or name")
        r.add_argument("target", type=Path, metavar="DIR", help="the directory to write to")
        r.set_defaults(func=run_render)
    gc = sub.add_parser(
        "image-gc", parents=parents, prog="rkt image gc", help="remove unused images (rkt image gc)"
    )
    gc.add_argument(
        "--grace-period",
        default="24h0m0s",
        type=parse_duration,
        help="duration to wait since an image was last used before removing it (default 24h0m0s)",
    )
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


def _name(record: Any) -> str:
    return _version_name(record.name, record.labels)


def _version_name(name: str, labels: tuple[tuple[str, str], ...]) -> str:
    """``NAME:VERSION`` as rkt shows an image (``NAME`` without a version label)."""
    for k, v in labels:
        if k == "version":
            return f"{name}:{v}" if v else str(name)
    return str(name)


def _column(field: str, records: list[Any], full: bool, now: datetime) -> list[str]:
    """One column of the table as rkt prints it: short ID, humanized size and times;
    ``--full`` gives the full ID, the size in bytes and the times in Go's default layout.
    One clock reading serves every row, one pass per column (issue #14)."""
    if field == "id":
        return [r.key for r in records] if full else [r.key[:SHORT_ID] for r in records]
    if field == "name":
        return [_version_name(r.name, r.labels) for r in records]
    if field == "size":
        return [str(r.size) for r in records] if full else [ibytes(r.size) for r in records]
    if field in ("importtime", "lastused"):
        times = [r.import_time if field == "importtime" else r.last_used for r in records]
        return [go_time(t) for t in times] if full else [humanize(t, now) for t in times]
    if field == "signers":
        return [
            ",".join(_signers(r)) or ("insecure" if r.provenance.insecure else "") for r in records
        ]
    return [r.source for r in records]


def _json_row(record: Any) -> dict[str, Any]:
    """rkt's ImageListEntry (full ID, times in Unix nanoseconds, size in bytes), then
    trustd's extras: signers, insecure, source and the provenance record."""
    provenance = {**record.provenance.to_json(), "signers": _signers(record)}
    return {
        "id": record.key,
        "name": _name(record),
        "import_time": unix_nanos(record.import_time),
        "last_used_time": unix_nanos(record.last_used),
        "size": record.size,
        "signers": _signers(record),
        "insecure": record.provenance.insecure,
        "source": record.source,
        "provenance": provenance,
    }


def _listing(args: argparse.Namespace) -> str:
    store = _store(args.options)
    json_out = is_json(args.format)
    # the table without a signers column shows no provenance: rows, not records (issue #14)
    records = store.images() if json_out or "signers" in args.fields else store.table()
    if args.sort:  # the sort fields' values, as one tuple a row
        attrs = {"name": "name", "importtime": "import_time", "lastused": "last_used"}
        by = attrgetter(*(attrs.get(f, f) for f in args.sort))
        key = by if len(args.sort) > 1 else lambda r: (by(r),)
        records.sort(key=key, reverse=args.order == "desc")
    if json_out:
        return json_text([_json_row(r) for r in records], args.format)  # ASCII: no raw C1 bytes
    now = datetime.now(UTC)
    legend = [] if args.no_legend else [HEADERS]
    columns = [[*(h[f] for h in legend), *_column(f, records, args.full, now)] for f in args.fields]
    return tab_columns(columns)


def run_list(args: argparse.Namespace) -> int:
    if not args.fields:
        raise UserError("--fields names no field", hint=f"e.g. --fields={DEFAULT_FIELDS}")
    signers = is_json(args.format) or "signers" in args.fields
    verify = ("trustd.shared.verify",) if signers else ()  # format_fingerprint
    text = as_group_to_the_end(args.options, lambda: _listing(args), preload=verify)
    if text:
        print(text)
    return 0


def _references(options: GlobalOptions, command: str) -> dict[str, tuple[str, ...]]:
    """Which images pods reference: read by the root program as root (pods' plans are
    root's), by this process otherwise (a plan it cannot read stops it with the fix)."""
    if os.geteuid() == 0:
        return dict(_image_use(options, command).references)
    from trustd.privileged.executor.references import referenced_images  # noqa: PLC0415

    return {key: tuple(uuids) for key, uuids in referenced_images(options.dirs.data).items()}


def _image_use(options: GlobalOptions, command: str) -> Any:
    from trustd.cli._handoff import query_root  # noqa: PLC0415
    from trustd.shared.request import PodReferences, decode_use  # noqa: PLC0415

    return decode_use(query_root(options, command, PodReferences("pod-references")))


def _refuse_referenced(refs: dict[str, tuple[str, ...]], full_id: str) -> None:
    from trustd.shared.request import pods_using  # noqa: PLC0415

    if using := pods_using(refs, full_id):
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

    return as_group(options, work, names=False)


def run_rm(args: argparse.Namespace) -> int:
    """Index and blobs go with the group's rights; as root, the root program then removes
    root's state about each removed image (its tree and last-used stamp)."""
    options: GlobalOptions = args.options
    refs = _references(options, "rm")
    removed: list[str] = []
    try:
        for ref in args.images:
            key = full_key(options, ref)
            _refuse_referenced(refs, key.id)
            short = _remove_one(options, key)
            print(f'successfully removed aci for image: "{short}"')
            removed.append(key.id)
    finally:
        if removed and os.geteuid() == 0:  # also when a later image was refused
            from trustd.cli._handoff import call_root  # noqa: PLC0415
            from trustd.shared.request import RemoveTrees  # noqa: PLC0415

            call_root(options, "rm", RemoveTrees("image-rm-trees", tuple(removed)))
    print(f"rm: {len(removed)} image(s) successfully removed", file=sys.stderr)
    return 0


def run_cat_manifest(args: argparse.Namespace) -> int:
    """The image's manifest as its own bytes say it: read from the stored archive in the one
    pass that hashes it, and shown only when that hash is the image's ID. The blob dir's
    ``manifest`` file is the group's to rewrite (red team 8: a member's forged ``exec`` was
    shown to root as the image's); the archive is opened beneath the blob dir with no
    symlink followed and without waiting on a FIFO, in the group's child."""
    from trustd.shared.store._stored import stored_info  # noqa: PLC0415

    def work() -> str:
        store = _store(args.options)
        info = stored_info(store.layout, store.resolve(args.image))
        return go_json(json.loads(info.manifest.to_json()), pretty=args.pretty_print)

    print(as_group(args.options, work, names=not is_id_ref(args.image)))
    return 0


def run_export(args: argparse.Namespace) -> int:
    """The stored archive, uncompressed; read beneath ``cas`` by the checked full ID, with
    no symlink followed: as root, in the root program."""
    from trustd.cli._apps import _requested_name  # noqa: PLC0415

    key = full_key(args.options, args.image)
    name, version = _requested_name(args.image)  # root checks the image says so
    if args.output.exists() and not args.overwrite:
        raise UserError(f"{args.output} already exists", hint="pass --overwrite")
    if os.geteuid() == 0:
        from trustd.cli._handoff import call_root  # noqa: PLC0415
        from trustd.shared.request import ExportImage  # noqa: PLC0415

        output = str(args.output.absolute())
        call_root(
            args.options,
            "export",
            ExportImage("image-export", key.id, output, args.overwrite, name, version),
        )
        return 0
    from trustd.privileged.treestore.export import export_image  # noqa: PLC0415

    export_image(
        args.options.dirs.data, key, args.output, overwrite=args.overwrite, expected=(name, version)
    )
    return 0


def run_render(args: argparse.Namespace) -> int:
    """render and extract run in the root program, which re-verifies a private copy first
    (trustd.privileged.treestore.render); the image is named there by its full key."""
    from trustd.cli._apps import _requested_name  # noqa: PLC0415
    from trustd.cli._handoff import exec_root, require_root  # noqa: PLC0415
    from trustd.shared.insecure import Insecure  # noqa: PLC0415
    from trustd.shared.request import Render  # noqa: PLC0415

    require_root()
    options: GlobalOptions = args.options
    name, version = _requested_name(args.image)  # root checks the verified image says so
    request = Render(
        "render",
        full_key(options, args.image).id,
        str(args.target.absolute()),
        rootfs_only=args.rootfs_only,
        overwrite=args.overwrite,
        allow_insecure=Insecure.IMAGE in options.insecure,
        expected_name=name,
        expected_version=version,
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
    as root, the root program first reports the pods' references and its last-use stamps,
    and afterwards removes the rendered trees no image or pod needs any more."""
    from trustd.shared.stage1image import stage1_image_ids  # noqa: PLC0415

    options: GlobalOptions = args.options
    grace = args.grace_period
    shipped = stage1_image_ids()  # the stage1 images stay, as rkt keeps its stage1 (ADR 0018)
    if os.geteuid() != 0:
        keep = set(_references(options, "gc")) | shipped
        result = json.loads(_collect(options, grace, keep, {}))
    else:
        from trustd.cli._handoff import call_root  # noqa: PLC0415
        from trustd.shared.request import CollectTrees  # noqa: PLC0415

        use = _image_use(options, "gc")
        keep, stamps = set(use.references) | shipped, dict(use.used)

        def work() -> str:
            return _collect(options, grace, keep, stamps)

        result = json.loads(as_group(options, work, names=False))
        remaining = tuple(StoreKey.parse(i).id for i in result["remaining"])
        call_root(options, "gc", CollectTrees("image-gc", remaining))
    for key, name, _full in result["removed"]:
        print(printable(f'gc: removed image "{key}" ({name})'))
    return 0

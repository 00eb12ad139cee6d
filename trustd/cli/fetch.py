"""``rkt fetch IMAGE... [--signature FILE]``: verify and store images, print their IDs."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path
from typing import Any

from trustd.cli._common import info
from trustd.cli._grammar import interspersed
from trustd.shared.config import GlobalOptions
from trustd.shared.errors import LocalStateError, UserError
from trustd.shared.imageid import store_key
from trustd.shared.insecure import Insecure, warn_insecure

PULL_POLICIES = ("never", "new", "update")


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "fetch",
        parents=parents,
        help="fetch image(s) and store them locally",
        description="Fetch images into the store and print their IDs. Flags may follow the "
        "images; --signature FILE applies to the image before it, as in rkt.",
    )
    p.add_argument(
        "--pull-policy",
        choices=PULL_POLICIES,
        default="update",
        help="when to fetch an image: never (the store only), new (only if not in the "
        "store) or update (always ask the remote; default)",
    )
    p.add_argument("--full", action="store_true", help="print the full image ID")
    add_deprecated_store_flags(p)
    p.add_argument(
        "--signature",
        action=_SignatureFirst,
        metavar="FILE",
        help="local signature file to use in validating the preceding image",
    )
    p.add_argument(
        "images",
        nargs=argparse.REMAINDER,
        metavar="IMAGE [--signature FILE]",
        help="image names, files, URLs or docker:// references",
    )
    p.set_defaults(func=run, **interspersed(p, {"--signature"}, app_args=False))


class _SignatureFirst(argparse.Action):
    """``--signature`` before any image: rkt's ``--signature must follow an image`` (after
    an image the word stays with the images, read by :func:`parse_image_args`)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        raise UserError("--signature must follow an image", hint=_SIGNATURE_HINT)


_SIGNATURE_HINT = "put it after the image it signs: rkt fetch IMAGE --signature IMAGE.asc"


def parse_image_args(tokens: list[str]) -> list[tuple[str, Path | None]]:
    """rkt's per-image flags: ``--signature FILE`` applies to the image before it."""
    out: list[tuple[str, Path | None]] = []
    it = iter(tokens)
    for word in it:
        if word == "--signature" or word.startswith("--signature="):
            value = word.partition("=")[2] or next(it, "")
            if not out:
                raise UserError("--signature must follow an image", hint=_SIGNATURE_HINT)
            if not value:
                raise UserError("--signature needs a file", hint=_SIGNATURE_HINT)
            image, previous = out[-1]
            if previous is not None:
                raise UserError(
                    "--signature specified multiple times for the same image",
                    hint=f"give {image!r} one --signature",
                )
            out[-1] = (image, Path(value))
        elif word.startswith("--"):
            raise UserError(
                f"unknown flag {word!r} after the first image",
                hint="put fetch flags before the images",
            )
        else:
            out.append((word, None))
    if not out:
        raise UserError("must provide at least one image")
    return out


def add_deprecated_store_flags(p: argparse.ArgumentParser) -> None:
    """rkt's deprecated --store-only and --no-store (read by :func:`deprecated_pull_policy`)."""
    p.add_argument(
        "--store-only",
        action="store_true",
        deprecated="please use --pull-policy=never",
        help="use only images in the store",
    )
    p.add_argument(
        "--no-store",
        action="store_true",
        deprecated="please use --pull-policy=update",
        help="fetch images ignoring the local store",
    )


def deprecated_pull_policy(args: argparse.Namespace, policy: str) -> str:
    """rkt's deprecated --store-only / --no-store: the pull policy they stand for."""
    store_only, no_store = getattr(args, "store_only", False), getattr(args, "no_store", False)
    if store_only and no_store:
        raise UserError("both --store-only and --no-store specified")
    return "never" if store_only else "update" if no_store else policy


def run(args: argparse.Namespace) -> int:
    from trustd.unprivileged.fetch import FetchRequest, parse_image_ref  # noqa: PLC0415

    options: GlobalOptions = args.options
    warn_insecure("fetch", options.insecure, Insecure.ALL_FETCH)
    policy = deprecated_pull_policy(args, args.pull_policy)
    requests = [
        FetchRequest(parse_image_ref(text), sig) for text, sig in parse_image_args(args.images)
    ]
    ctx = fetch_context(options, policy)
    for request in requests:
        key = store_key(fetch_one(request, ctx))
        print(key if args.full else key[: len("sha512-") + 32])
    return 0


def fetch_context(options: GlobalOptions, pull_policy: str) -> Any:
    from trustd.shared import fetch_settings  # noqa: PLC0415
    from trustd.shared.keystore import Keystore  # noqa: PLC0415
    from trustd.shared.policy import load_effective  # noqa: PLC0415
    from trustd.shared.store import ImageStore  # noqa: PLC0415
    from trustd.unprivileged.fetch import FetchContext  # noqa: PLC0415
    from trustd.unprivileged.fetch._auth import load_auth  # noqa: PLC0415

    dirs = options.dirs
    config_dirs = (dirs.system_config, dirs.local_config, dirs.user_config)
    keystore = Keystore(dirs.system_config, dirs.local_config)
    if os.geteuid() == 0:  # root makes the directories; the index is the fetch child's
        from trustd.privileged.treestore.datadir import prepare_store  # noqa: PLC0415

        prepare_store(dirs.data)
        store = ImageStore(dirs.data)
        keystore.preload()  # read as root: the fetch child may not read 0700 config dirs
    else:
        store = ImageStore.open(dirs.data, create=True)
    return FetchContext(
        store=store,
        keystore=keystore,
        insecure=options.insecure,
        policy=load_effective(dirs.system_config, dirs.local_config),
        pull_policy=pull_policy,
        debug=options.debug,
        # read here, as the invoking user (root: before the fetch child drops privileges)
        auth=load_auth(tuple(d for d in config_dirs if d is not None)),
        trust_keys_from_https=options.trust_keys_from_https,
        min_rate=fetch_settings.load(config_dirs).min_rate,  # bad values: refused here
    )


def fetch_one(request: Any, ctx: Any, *, touch: bool = False) -> str:
    """Fetch one image and return its full image ID (``sha512-`` and 128 hex digits); as
    root, the work runs unprivileged."""
    from trustd.unprivileged.fetch import fetch_image  # noqa: PLC0415
    from trustd.unprivileged.fetch.workflow import open_local  # noqa: PLC0415

    local = open_local(request, ctx.insecure)  # opened with the caller's rights

    def work() -> str:
        ctx.store.ensure()  # the index is created and opened here, never by root
        record = fetch_image(request, ctx, local)
        if touch:  # run and prepare count as a use (root keeps its own stamp too)
            ctx.store.index.touch(record.key)
        return str(record.full_key.id)  # from the bytes this process hashed, not a lookup

    if os.geteuid() != 0:
        return work()
    from trustd.privileged.treestore.datadir import (  # noqa: PLC0415
        open_data_dir,
        root_fetched,
        root_remotes,
    )
    from trustd.shared.store._index import pin_fetched  # noqa: PLC0415
    from trustd.unprivileged.privsep import fetch_identity, require_reachable, run_as  # noqa: PLC0415

    identity = fetch_identity()
    # which image a URL fetched before is, and which image of a name is the newest, come
    # from root's own records, not the group's index (red team: a member pointed a URL at
    # another signed image; made an old release of a name the newest)
    with open_data_dir(ctx.store.layout.root) as data:
        ctx.store.index.pin_remotes(root_remotes(data))
        pin_fetched(root_fetched(data))

    def dropped() -> str:
        require_reachable(ctx.store.layout.root, identity)
        image_id = work()
        remotes = [
            [url, key, etag, max_age, when.isoformat()]
            for url, (key, etag, max_age, when) in ctx.store.index.remote_updates
        ]
        return json.dumps({"id": image_id, "remotes": remotes, "admitted": ctx.store.admitted})

    if ctx.debug:
        info("image", f"fetching as {identity.user} (uid {identity.uid}), group rkt")
    modules = _child_modules(request.ref.kind)
    discover = request.ref.kind == "name" and ctx.gate_keystore() is not None
    if discover and not _stored_already(request, ctx, identity, modules):
        _tofu_as_root(request.ref.name, ctx, identity, modules)
    return _recorded(ctx, json.loads(run_as(identity, dropped, modules)))


def _recorded(ctx: Any, answer: Any) -> str:
    """The fetch child's image ID, once the URLs it fetched and the images it admitted are
    in root's own records."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from trustd.privileged.treestore.datadir import (  # noqa: PLC0415
        open_data_dir,
        record_fetched,
        record_remotes,
    )
    from trustd.shared.store.model import remote_record  # noqa: PLC0415

    image_id, remotes = (
        (answer.get("id"), answer.get("remotes")) if type(answer) is dict else ("", "")
    )
    if type(image_id) is not str or not image_id or type(remotes) is not list:
        raise LocalStateError("the fetch process answered no image ID")
    updates = []
    for entry in remotes:  # as the child wrote them: each checked as a record is
        with contextlib.suppress(ValueError, TypeError):
            url, *fields = entry
            if type(url) is str:
                updates.append((url, remote_record(*fields)))
    admitted = answer.get("admitted")
    fresh = [i for i in admitted if type(i) is str] if type(admitted) is list else []
    fresh.sort(key=lambda i: i != image_id)  # the image asked for first: the newest of them
    if updates or fresh:
        with open_data_dir(ctx.store.layout.root) as data:
            if updates:
                record_remotes(data, updates)
            if fresh:
                record_fetched(data, fresh, datetime.now(UTC))
    return image_id


def _child_modules(kind: str) -> tuple[str, ...]:
    """What the fetch child needs, loaded before the fork (it may not read the installation
    once it dropped privileges): the docker modules only for docker sources, discovery and
    key discovery only for names (issue #14: ~100 ms of imports a URL fetch never used)."""
    modules: tuple[str, ...] = (
        "trustd.unprivileged.fetch.remote",
        "trustd.unprivileged.transport",
        "trustd.shared.appc.aci",
        "trustd.unprivileged.fetch._auth",
    )
    if kind == "name":
        modules += ("trustd.unprivileged.fetch._tofu", "trustd.unprivileged.discovery")
    if kind == "docker":
        modules += ("trustd.unprivileged.docker",)
    return modules


def _stored_already(request: Any, ctx: Any, identity: Any, modules: tuple[str, ...]) -> bool:
    """Key discovery is network work, needed only for a download: not under
    ``--pull-policy=never`` (the store only, issue #15), nor under ``new`` when the store has
    the name (looked up unprivileged: root never opens the index)."""
    if ctx.pull_policy == "never":
        return True
    if ctx.pull_policy != "new":
        return False
    from trustd.unprivileged.fetch.remote import stored_by_name  # noqa: PLC0415
    from trustd.unprivileged.privsep import require_reachable, run_as  # noqa: PLC0415

    def lookup() -> str:
        require_reachable(ctx.store.layout.root, identity)
        ctx.store.ensure()
        return "yes" if stored_by_name(request.ref, ctx) is not None else "no"

    return run_as(identity, lookup, modules) == "yes"


def _tofu_as_root(name: Any, ctx: Any, identity: Any, modules: tuple[str, ...]) -> None:
    """Key discovery runs unprivileged; root only writes the keys the user accepted."""
    from trustd.shared.verify import parse_public_keys  # noqa: PLC0415
    from trustd.unprivileged.fetch._tofu import add_keys, select_keys  # noqa: PLC0415
    from trustd.unprivileged.privsep import run_as  # noqa: PLC0415

    chosen = run_as(
        identity,
        lambda: json.dumps([[loc, key.armored] for loc, key in select_keys(name, ctx)]),
        modules,
    )
    keys = [
        (loc, parse_public_keys(armored.encode(), source=loc)[0])
        for loc, armored in json.loads(chosen)
    ]
    add_keys(name, keys, ctx)

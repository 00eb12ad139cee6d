"""``rkt run``: fetch what is missing (unprivileged), then hand the pod to the root program.

    rkt run [pod flags] IMAGE [app flags] [-- ARGS... [---]] [IMAGE [app flags] ...]

The exit status is the first app's; trustd's own failures are 254.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trustd.cli._apps import app_requests, parse_volume
from trustd.cli._handoff import exec_root, require_root
from trustd.cli._net import add_net_flags, net_options
from trustd.shared.config import GlobalOptions
from trustd.shared.errors import UserError
from trustd.shared.insecure import Insecure, warn_insecure
from trustd.shared.net import NetOptions
from trustd.shared.request import Run, RunRequest
from trustd.shared.vocab import STAGE1_NAMES, Flavor


def add_pod_flags(p: argparse.ArgumentParser, *, running: bool) -> None:
    p.add_argument("--pull-policy", choices=("never", "new", "update"), default="new")
    p.add_argument("--volume", action="append", default=[], type=parse_volume)
    p.add_argument("--stage1-name", default="container", help="container (default) or fly")
    p.add_argument("--stage1-path", type=Path, help="a stage1 descriptor file (JSON)")
    add_net_flags(p, ports=True, dns=running)  # network flags: trustd/cli/_net.py
    if running:
        p.add_argument("--hostname")
        p.add_argument("--interactive", action="store_true")
        p.add_argument("--uuid-file-save", type=Path)
        p.add_argument(
            "--mds-register",
            action="store_true",
            help="serve the appc metadata service to the pod (AC_METADATA_URL)",
        )
    p.add_argument("images", nargs=argparse.REMAINDER, metavar="IMAGE [app flags] [-- args]")


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", parents=parents, help="run image(s) in a pod (root)")
    add_pod_flags(p, running=True)
    p.set_defaults(func=run)


def flavor(args: argparse.Namespace) -> Flavor:
    if args.stage1_path is not None:
        import json  # noqa: PLC0415

        try:
            name = json.loads(args.stage1_path.read_text())["flavor"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"bad stage1 descriptor {args.stage1_path}: {exc}") from exc
    else:
        name = args.stage1_name
    if name not in STAGE1_NAMES:
        raise UserError(f"unknown stage1 {name!r}", hint=f"use one of: {', '.join(STAGE1_NAMES)}")
    return STAGE1_NAMES[name]


def build_request(args: argparse.Namespace, options: GlobalOptions) -> RunRequest:
    return RunRequest(
        apps=app_requests(args.images, options, args.pull_policy),
        flavor=flavor(args),
        network=net_options(args) or NetOptions(),
        hostname=getattr(args, "hostname", None),
        volumes=tuple(args.volume),
        insecure=options.insecure,
        mds_register=getattr(args, "mds_register", False),
    )


def run(args: argparse.Namespace) -> int:
    """Images are fetched (unprivileged) and resolved to store keys here; then this process
    becomes the root program, which prepares, measures and runs the pod."""
    require_root()
    options: GlobalOptions = args.options
    warn_insecure("run", options.insecure, Insecure.ALL)
    request = build_request(args, options)
    uuid_file = str(args.uuid_file_save.absolute()) if args.uuid_file_save else None
    exec_root(options, "run", Run(kind="run", pod=request, uuid_file=uuid_file))

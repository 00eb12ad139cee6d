"""``rkt enter [--app=NAME] UUID [CMD [ARGS]]`` — confined like the app (ADR 0006)."""

from __future__ import annotations

import argparse
from typing import Any

from trustd.shared.errors import UserError


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("enter", parents=parents, help="run a command inside a running app")
    p.add_argument("--app", help="name of the app to enter within the specified pod")
    p.add_argument("uuid", help="the pod's UUID (a unique prefix is enough)")
    p.add_argument(
        "command", nargs=argparse.REMAINDER, help="command and arguments to run (default /bin/sh)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trustd.cli._handoff import exec_root  # noqa: PLC0415
    from trustd.shared.request import Enter  # noqa: PLC0415

    if not args.uuid:
        raise UserError("UUID cannot be empty")
    request = Enter("enter", args.uuid.lower(), args.app, tuple(args.command))
    exec_root(args.options, "enter", request)

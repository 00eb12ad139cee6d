"""``rkt enter [--app=NAME] UUID [CMD [ARGS]]`` — confined like the app (ADR 0006)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("enter", parents=parents, help="run a command inside a running app")
    p.add_argument("--app")
    p.add_argument("uuid")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trustd.privileged.executor.enter import enter  # noqa: PLC0415
    from trustd.privileged.pod import PodStore  # noqa: PLC0415

    pod = PodStore(args.options.dirs.data).find(args.uuid)
    return enter(pod, args.app, list(args.command))

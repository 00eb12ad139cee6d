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
    from trustd.cli.run import measure_config, policy_in_force  # noqa: PLC0415
    from trustd.privileged.executor.enter import enter, gate_for_enter  # noqa: PLC0415
    from trustd.privileged.executor.prepare import require_root  # noqa: PLC0415
    from trustd.privileged.pod import PodStore  # noqa: PLC0415
    from trustd.shared.keystore import Keystore  # noqa: PLC0415
    from trustd.shared.store import ImageStore  # noqa: PLC0415

    require_root()
    dirs = args.options.dirs
    pod = PodStore(dirs.data).find(args.uuid)
    store = ImageStore.open(dirs.data)
    keystore = Keystore(dirs.system_config, dirs.local_config)
    policy, measure = policy_in_force(args.options), measure_config(args.options)
    gated = gate_for_enter(
        pod, store, keystore, policy, data_dir=dirs.data, measurement=measure.mode
    )
    return enter(pod, gated, args.app, list(args.command))

"""``rkt run``: fetch what is missing (unprivileged), prepare as root, run the pod.

    rkt run [pod flags] IMAGE [app flags] [-- ARGS... [---]] [IMAGE [app flags] ...]

The exit status is the first app's; trustd's own failures are 254.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trustd.cli._apps import app_requests, parse_volume
from trustd.shared.config import GlobalOptions
from trustd.shared.errors import UserError
from trustd.shared.insecure import Insecure, warn_insecure

STAGE1 = {
    "container": "container",
    "fly": "fly",
    "coreos.com/rkt/stage1-coreos": "container",
    "coreos.com/rkt/stage1-fly": "fly",
    "trustd.io/stage1/container": "container",
    "trustd.io/stage1/fly": "fly",
}


def add_pod_flags(p: argparse.ArgumentParser, *, running: bool) -> None:
    p.add_argument("--pull-policy", choices=("never", "new", "update"), default="new")
    p.add_argument("--volume", action="append", default=[], type=parse_volume)
    p.add_argument("--stage1-name", default="container", help="container (default) or fly")
    p.add_argument("--stage1-path", type=Path, help="a stage1 descriptor (stage1/*.json)")
    if running:
        p.add_argument("--net", choices=("default", "none", "host"), default="default")
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


def flavor(args: argparse.Namespace) -> str:
    if args.stage1_path is not None:
        import json  # noqa: PLC0415

        try:
            name = json.loads(args.stage1_path.read_text())["flavor"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"bad stage1 descriptor {args.stage1_path}: {exc}") from exc
    else:
        name = args.stage1_name
    if name not in STAGE1:
        raise UserError(f"unknown stage1 {name!r}", hint=f"use one of: {', '.join(STAGE1)}")
    return STAGE1[name]


def build_request(args: argparse.Namespace, options: GlobalOptions) -> Any:
    from trustd.privileged.executor.request import RunRequest  # noqa: PLC0415

    return RunRequest(
        apps=app_requests(args.images, options, args.pull_policy),
        flavor=flavor(args),  # type: ignore[arg-type]
        net=getattr(args, "net", "default"),
        hostname=getattr(args, "hostname", None),
        volumes=tuple(args.volume),
        insecure=options.insecure,
        mds_register=getattr(args, "mds_register", False),
    )


def measure_config(options: GlobalOptions) -> Any:
    from trustd.privileged.executor._measure import load_config  # noqa: PLC0415

    return load_config(options.dirs.system_config, options.dirs.local_config)


def policy_in_force(options: GlobalOptions) -> Any:
    """The policy file that decides every run (no file is an error: no silent default)."""
    from trustd.shared.policy import load_effective  # noqa: PLC0415

    return load_effective(options.dirs.system_config, options.dirs.local_config)


def run(args: argparse.Namespace) -> int:
    from trustd.privileged.executor.prepare import prepare, require_root  # noqa: PLC0415
    from trustd.privileged.executor.run import run_prepared_pod  # noqa: PLC0415
    from trustd.privileged.pod import PodStore  # noqa: PLC0415
    from trustd.privileged.treestore.datadir import open_data_dir  # noqa: PLC0415
    from trustd.shared.keystore import Keystore  # noqa: PLC0415

    require_root()
    options: GlobalOptions = args.options
    warn_insecure("run", options.insecure, Insecure.ALL)
    request = build_request(args, options)
    data = open_data_dir(options.dirs.data)
    keystore = Keystore(options.dirs.system_config, options.dirs.local_config)
    pods = PodStore(options.dirs.data)
    policy, measure = policy_in_force(options), measure_config(options)
    prepared = prepare(request, data, keystore, pods, policy=policy, measurement=measure.mode)
    if args.uuid_file_save:
        args.uuid_file_save.write_text(prepared.pod.uuid + "\n")
    return run_prepared_pod(prepared, pods, measure, policy)

"""Pod commands: ``prepare``, ``run-prepared``, ``list``, ``status``, ``stop``, ``rm``, ``gc``,
``cat-manifest`` — rkt's flags and messages. ``list``/``status`` work for group rkt."""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trustd.cli._common import add_format_flag, is_json, print_json, print_table
from trustd.cli._handoff import exec_root, require_root
from trustd.cli._net import add_net_flags, net_options, network_column, pod_networks
from trustd.cli.image import parse_duration
from trustd.cli.run import add_pod_flags, build_request
from trustd.shared.config import GlobalOptions
from trustd.shared.errors import UserError
from trustd.shared.request import CollectPods, Export, Prepare, Remove, RunPrepared, Stop


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("prepare", parents=parents, help="prepare a pod (root)")
    add_pod_flags(p, running=False)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_prepare)
    rp = sub.add_parser("run-prepared", parents=parents, help="run a prepared pod (root)")
    rp.add_argument("--mds-register", action="store_true")
    rp.add_argument("--hostname")
    add_net_flags(rp, ports=False, dns=True)
    rp.add_argument("uuid")
    rp.set_defaults(func=run_run_prepared)
    ls = sub.add_parser("list", parents=parents, help="list pods")
    ls.add_argument("--full", action="store_true")
    ls.add_argument("--no-legend", action="store_true")
    add_format_flag(ls)
    ls.set_defaults(func=run_list)
    st = sub.add_parser("status", parents=parents, help="show a pod's status")
    st.add_argument("--wait", nargs="?", const="true", default="false")
    add_format_flag(st)
    st.add_argument("uuid")
    st.set_defaults(func=run_status)
    for verb, func, help_ in (
        ("stop", run_stop, "stop pods"),
        ("rm", run_rm, "remove pods"),
        ("cat-manifest", run_cat, "print a pod's manifest"),
    ):
        q = sub.add_parser(verb, parents=parents, help=help_)
        if verb == "stop":
            q.add_argument("--force", action="store_true")
        q.add_argument("uuids", nargs="+" if verb != "cat-manifest" else 1)
        q.set_defaults(func=func)
    ex = sub.add_parser("export", parents=parents, help="export an exited app as an ACI")
    ex.add_argument("--app")
    ex.add_argument("--overwrite", action="store_true")
    ex.add_argument("uuid")
    ex.add_argument("output", type=Path)
    ex.set_defaults(func=run_export)
    gc = sub.add_parser("gc", parents=parents, help="garbage-collect exited pods (root)")
    gc.add_argument("--grace-period", type=parse_duration, default="30m0s")
    gc.add_argument("--expire-prepared", type=parse_duration, default="24h0m0s")
    gc.add_argument("--mark-only", action="store_true")
    gc.set_defaults(func=run_gc)


def _pods(options: GlobalOptions) -> Any:
    from trustd.privileged.pod import PodStore  # noqa: PLC0415

    return PodStore(options.dirs.data)


def run_prepare(args: argparse.Namespace) -> int:
    require_root()
    request = build_request(args, args.options)
    exec_root(args.options, "prepare", Prepare(kind="prepare", pod=request))


def run_run_prepared(args: argparse.Namespace) -> int:
    uuid = args.uuid.lower()
    request = RunPrepared("run-prepared", uuid, args.mds_register, net_options(args), args.hostname)
    exec_root(args.options, "run-prepared", request)


def _info(pod: Any) -> dict[str, Any]:
    from trustd.privileged.pod.lifecycle import INFO  # noqa: PLC0415

    def read(name: str) -> str | None:
        path = pod.path / name
        return path.read_text().strip() if path.is_file() else None

    apps = []
    info = read(INFO)  # public; plan.json (env, args) is root-only under private/
    for app in json.loads(info)["apps"] if info else []:
        code = read(f"apps/{app['name']}/exit")
        apps.append(
            {
                "name": app["name"],
                "image_id": app["image_key"],
                "image_name": app["image_name"],
                "exit_code": None if code is None else int(code),
            }
        )
    return {
        "name": pod.uuid,
        "state": str(pod.state()),
        "apps": apps,
        "created_at": read("pod-created"),
        "started_at": read("pod-started"),
        "finished_at": read("pod-finished"),
        "networks": pod_networks(pod.path),
    }


def run_list(args: argparse.Namespace) -> int:
    infos = [_info(p) for p in _pods(args.options).pods()]
    if is_json(args.format):
        print_json(infos, args.format)
        return 0
    rows = []
    for info in infos:
        uuid = info["name"] if args.full else info["name"][:8]
        for i, app in enumerate(info["apps"] or [{"name": "-", "image_name": "-"}]):
            rows.append(
                [
                    uuid if i == 0 else "",
                    app["name"],
                    app["image_name"],
                    info["state"],
                    info["created_at"] or "",
                    info["started_at"] or "",
                    network_column(info["networks"]) if i == 0 else "",
                ]
            )
    legend = ["UUID", "APP", "IMAGE NAME", "STATE", "CREATED", "STARTED", "NETWORKS"]
    print_table(rows, None if args.no_legend else legend)
    return 0


def run_status(args: argparse.Namespace) -> int:
    pod = _pods(args.options).find(args.uuid)
    if args.wait != "false":
        limit = None if args.wait == "true" else parse_duration(args.wait)
        deadline = None if limit is None else datetime.now(UTC) + limit
        while pod.state().value in ("running", "preparing"):
            if deadline and datetime.now(UTC) > deadline:
                raise UserError(f'pod "{pod.uuid}" still running after {args.wait}')
            time.sleep(0.1)
            pod = _pods(args.options).find(pod.uuid)
    info = _info(pod)
    exited = info["state"] in ("exited", "exited garbage")
    if is_json(args.format):
        print_json({**info, "exited": exited}, args.format)
        return 0
    print(
        f"state={info['state']}\ncreated={info['created_at'] or ''}\n"
        f"started={info['started_at'] or ''}\nnetworks={network_column(info['networks'])}"
    )
    print(f"exited={'true' if exited else 'false'}")  # rkt's key=value lines, its words
    for app in info["apps"]:
        if app["exit_code"] is not None:
            print(f"app-{app['name']}={app['exit_code']}")
    return 0


def _uuids(values: list[str]) -> tuple[str, ...]:
    if any(not v for v in values):
        raise UserError("UUID cannot be empty")
    return tuple(v.lower() for v in values)


def run_stop(args: argparse.Namespace) -> int:
    exec_root(args.options, "stop", Stop("stop", _uuids(args.uuids), force=args.force))


def run_rm(args: argparse.Namespace) -> int:
    exec_root(args.options, "rm", Remove("rm", _uuids(args.uuids)))


def run_gc(args: argparse.Namespace) -> int:
    request = CollectPods(
        "gc",
        grace_seconds=int(args.grace_period.total_seconds()),
        expire_prepared_seconds=int(args.expire_prepared.total_seconds()),
        mark_only=args.mark_only,
    )
    exec_root(args.options, "gc", request)


def run_export(args: argparse.Namespace) -> int:
    uuid = _uuids([args.uuid])[0]
    request = Export("export", uuid, args.app, str(args.output.absolute()), args.overwrite)
    exec_root(args.options, "export", request)


def run_cat(args: argparse.Namespace) -> int:
    from trustd.privileged.pod.lifecycle import MANIFEST  # noqa: PLC0415

    pod = _pods(args.options).find(args.uuids[0])
    if os.geteuid() != 0:
        raise UserError(
            f"pod {pod.uuid}: its manifest holds the apps' environment, which only root may read",
            hint=f"run it as root: sudo rkt cat-manifest {pod.uuid}",
        )
    print((pod.check_private() / MANIFEST).read_text())
    return 0

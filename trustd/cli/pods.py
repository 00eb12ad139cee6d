"""Pod commands: ``prepare``, ``run-prepared``, ``list``, ``status``, ``stop``, ``rm``, ``gc``,
``cat-manifest`` — rkt's flags and messages. ``list``/``status`` work for group rkt."""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from trustd.cli._common import add_format_flag, is_json
from trustd.cli._format import go_json, go_time, humanize, parse_time, tab_columns
from trustd.cli._grammar import FALSE_WORDS, TRUE_WORDS, no_opt_value
from trustd.cli._handoff import exec_root, require_root
from trustd.cli._net import (
    add_net_flags,
    net_options,
    network_column,
)
from trustd.cli._podinfo import api_pod, list_rows, pod_info, pod_infos
from trustd.cli.image import parse_duration
from trustd.cli.run import add_ipc_flag, add_pod_flags, build_request
from trustd.shared.config import GlobalOptions
from trustd.shared.errors import UserError
from trustd.shared.request import CollectPods, Export, Prepare, Remove, RunPrepared, Stop


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("prepare", parents=parents, help="prepare a pod (root)")
    add_pod_flags(p, running=False)
    p.add_argument(
        "--quiet",
        action="store_true",
        help="suppress superfluous output on stdout, print only the UUID on success",
    )
    p.set_defaults(func=run_prepare)
    rp = sub.add_parser("run-prepared", parents=parents, help="run a prepared pod (root)")
    rp.add_argument(
        "--mds-register",
        action="store_true",
        help="serve the appc metadata service to the pod (AC_METADATA_URL)",
    )
    rp.add_argument("--interactive", action="store_true", help="run the one app on this terminal")
    rp.add_argument("--hostname", help="the pod's hostname (default: as prepared)")
    add_net_flags(rp, ports=False, dns=True)
    add_ipc_flag(rp, default=None)
    rp.add_argument("uuid", help="the prepared pod's UUID")
    rp.set_defaults(func=run_run_prepared)
    ls = sub.add_parser("list", parents=parents, help="list pods")
    ls.add_argument(
        "--full",
        action="store_true",
        help="use long output format (full UUID, IMAGE ID, absolute times)",
    )
    ls.add_argument("--no-legend", action="store_true", help="suppress a legend with the list")
    add_format_flag(ls)
    ls.set_defaults(func=run_list)
    st = sub.add_parser("status", parents=parents, help="show a pod's status")
    wait = st.add_argument(
        "--wait",
        default="false",
        help="toggle waiting for the pod to exit (true, false or a duration such as 10s)",
    )
    ready = st.add_argument(
        "--wait-ready",
        default="false",
        help="toggle waiting until the pod is ready: started (true, false or a duration "
        "such as 10s)",
    )
    for action in (wait, ready):
        no_opt_value(action, "true")
    add_format_flag(st)
    st.add_argument(
        "uuid", nargs="?", help="the pod's UUID (a unique prefix is enough)", default=None
    )
    _uuid_file_flag(st)
    st.set_defaults(func=run_status)
    for verb, func, help_ in (
        ("stop", run_stop, "stop pods"),
        ("rm", run_rm, "remove pods"),
        ("cat-manifest", run_cat, "print a pod's manifest"),
    ):
        q = sub.add_parser(verb, parents=parents, help=help_)
        if verb == "stop":
            q.add_argument("--force", action="store_true", help="forced stopping (SIGKILL)")
        if verb == "cat-manifest":
            q.add_argument(
                "--pretty-print",
                action="store_true",
                default=True,
                help="apply indent to format the output (default true)",
            )
        _uuid_file_flag(q)
        q.add_argument(
            "uuids",
            nargs="*" if verb != "cat-manifest" else "?",
            metavar="UUID",
            help="pod UUIDs (unique prefixes are enough)",
        )
        q.set_defaults(func=func)
    ex = sub.add_parser("export", parents=parents, help="export an exited app as an ACI")
    ex.add_argument("--app", help="name of the app to export within the specified pod")
    ex.add_argument("--overwrite", action="store_true", help="overwrite the output ACI")
    ex.add_argument("uuid", help="the exited pod's UUID")
    ex.add_argument("output", type=Path, help="the ACI file to write (ends in .aci)")
    ex.set_defaults(func=run_export)
    gc = sub.add_parser("gc", parents=parents, help="garbage-collect exited pods (root)")
    gc.add_argument(
        "--grace-period",
        type=parse_duration,
        default="30m0s",
        help="duration to wait before discarding inactive pods from garbage (default 30m0s)",
    )
    gc.add_argument(
        "--expire-prepared",
        type=parse_duration,
        default="24h0m0s",
        help="duration to wait before expiring prepared pods (default 24h0m0s)",
    )
    gc.add_argument(
        "--mark-only",
        action="store_true",
        help="if set to true, only the 'mark' phase of the garbage collection runs: exited "
        "and aborted pods move to the garbage, nothing is deleted",
    )
    gc.set_defaults(func=run_gc)


def _uuid_file_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--uuid-file",
        type=Path,
        metavar="FILE",
        help="read pod UUID from file instead of argument",
    )


def pod_uuids(args: argparse.Namespace, *, many: bool) -> list[str]:
    """The UUIDs given as arguments or (rkt's --uuid-file) read from a file, never both."""
    given = getattr(args, "uuids", None)
    given = [given] if isinstance(given, str) else list(given or [])
    if getattr(args, "uuid", None) is not None:
        given.append(args.uuid)
    if args.uuid_file is not None:
        if given:
            raise UserError("only one of the UUID argument or --uuid-file may be given")
        from trustd.cli._common import read_input  # noqa: PLC0415

        text = read_input(args.uuid_file, "--uuid-file", 4096).decode("ascii", "replace")
        given = [text.strip()]
    if not given:
        raise UserError("missing pod UUID", hint="give the pod's UUID or --uuid-file=FILE")
    if any(not u for u in given):
        raise UserError("UUID cannot be empty")
    if not many and len(given) > 1:
        raise UserError("give exactly one pod UUID")
    return given


def _pods(options: GlobalOptions) -> Any:
    from trustd.privileged.pod import PodStore  # noqa: PLC0415

    return PodStore(options.dirs.data)


def run_prepare(args: argparse.Namespace) -> int:
    require_root()
    request = build_request(args, args.options)
    exec_root(args.options, "prepare", Prepare(kind="prepare", pod=request))


def run_run_prepared(args: argparse.Namespace) -> int:
    uuid = args.uuid.lower()
    exec_root(
        args.options,
        "run-prepared",
        RunPrepared(
            "run-prepared",
            uuid,
            args.mds_register,
            args.interactive,
            network=net_options(args),
            hostname=args.hostname,
            ipc=args.ipc,
        ),
    )


def _when(value: Any, full: bool, now: datetime | None = None) -> str:
    if value is None:
        return ""
    return go_time(value) if full else humanize(value, now)


def run_list(args: argparse.Namespace) -> int:
    if is_json(args.format):
        infos = pod_infos(args.options, full=True)
        print(go_json([api_pod(i) for i in infos], pretty=args.format == "json-pretty"))
        return 0
    full = args.full
    legend = not args.no_legend
    # the table a column at a time (tab_columns: tab_text's text); rkt prints the pod's
    # cells on its first app's row only, and a pod without apps as one row of "-"
    uuids, names, images, ids = (["UUID"], ["APP"], ["IMAGE NAME"], ["IMAGE ID"])
    states, created, started, networks = (["STATE"], ["CREATED"], ["STARTED"], ["NETWORKS"])
    now = datetime.now(UTC)
    for uuid, apps, state, made, began, nets in list_rows(args.options):
        uuids.append(uuid if full else uuid[:8])
        states.append(state)
        created.append(_when(parse_time(made), full, now))
        started.append(_when(parse_time(began), full, now))
        networks.append(network_column(nets))
        for i, (name, image_id, image) in enumerate(apps or [("-", "-", "-")]):
            if i:
                for column in (uuids, states, created, started, networks):
                    column.append("")
            names.append(name)
            images.append(image)
            if full:
                ids.append(image_id[:19])
    columns = [uuids, names, images, *([ids] if full else []), states, created, started]
    columns.append(networks)
    if not legend:
        columns = [column[1:] for column in columns]
    if text := tab_columns(columns):
        print(text)
    return 0


def _wait_limit(text: str) -> timedelta | Literal[False] | None:
    """rkt's wait flags: a Go boolean (False: do not wait; True -> None: no limit) or a
    duration to wait at most (``0`` is no wait, as in rkt)."""
    if text in TRUE_WORDS:
        return None
    if text in FALSE_WORDS:
        return False
    return parse_duration(text) or False


def _waited(args: argparse.Namespace, pod: Any) -> Any:
    """``--wait-ready`` (until the pod started: rkt's stage1 is up, trustd's pod-started
    stamp), then ``--wait`` (until it exited); each a limit or none."""
    if isinstance(ready := _wait_limit(args.wait_ready), timedelta | None):
        deadline = None if ready is None else datetime.now(UTC) + ready
        while pod_info(pod)["started"] is None:
            if pod.state().value not in ("prepared", "preparing", "running"):
                raise UserError(
                    f'pod "{pod.uuid}" is {pod.state()} and will not become ready',
                    hint="see rkt status UUID",
                )
            if deadline and datetime.now(UTC) > deadline:
                raise UserError(f'pod "{pod.uuid}" not ready after {args.wait_ready}')
            time.sleep(0.1)
            pod = _pods(args.options).find(pod.uuid)
    if isinstance(limit := _wait_limit(args.wait), timedelta | None):
        deadline = None if limit is None else datetime.now(UTC) + limit
        while pod.state().value in ("running", "preparing"):
            if deadline and datetime.now(UTC) > deadline:
                raise UserError(f'pod "{pod.uuid}" still running after {args.wait}')
            time.sleep(0.1)
            pod = _pods(args.options).find(pod.uuid)
    return pod


def run_status(args: argparse.Namespace) -> int:
    pod = _waited(args, _pods(args.options).find(pod_uuids(args, many=False)[0]))
    info = pod_info(pod)
    exited = info["state"] in ("exited", "exited garbage")
    if is_json(args.format):
        print(go_json(api_pod(info), pretty=args.format == "json-pretty"))
        return 0
    # rkt's key=value lines (status.go printStatus), its words and its order
    print(f"state={info['state']}")
    print(f"created={_when(info['created'], True)}")
    if info["started"] is not None:
        print(f"started={_when(info['started'], True)}")
    if info["state"] == "running" or info["networks"]:
        print(f"networks={network_column(info['networks'])}")
    if info["state"] in ("running", "deleting", "exited deleting", "exited", "exited garbage"):
        if info["pid"]:
            print(f"pid={info['pid']}")
        print(f"exited={'true' if exited else 'false'}")
        if info["state"] != "running":
            for app in info["apps"]:
                if app["exit_code"] is not None:
                    print(f"app-{app['name']}={app['exit_code']}")
    return 0


def _uuids(values: list[str]) -> tuple[str, ...]:
    if any(not v for v in values):
        raise UserError("UUID cannot be empty")
    return tuple(v.lower() for v in values)


def run_stop(args: argparse.Namespace) -> int:
    exec_root(
        args.options, "stop", Stop("stop", _uuids(pod_uuids(args, many=True)), force=args.force)
    )


def run_rm(args: argparse.Namespace) -> int:
    exec_root(args.options, "rm", Remove("rm", _uuids(pod_uuids(args, many=True))))


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

    pod = _pods(args.options).find(pod_uuids(args, many=False)[0])
    if os.geteuid() != 0:
        raise UserError(
            f"pod {pod.uuid}: its manifest holds the apps' environment, which only root may read",
            hint=f"run it as root: sudo rkt cat-manifest {pod.uuid}",
        )
    text = (pod.check_private() / MANIFEST).read_text()
    print(go_json(json.loads(text), pretty=args.pretty_print))
    return 0

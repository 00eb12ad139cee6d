"""Pod commands: ``prepare``, ``run-prepared``, ``list``, ``status``, ``stop``, ``rm``, ``gc``,
``cat-manifest`` — rkt's flags and messages. ``list``/``status`` work for group rkt."""

from __future__ import annotations

import argparse
import errno
import functools
import json
import os
import stat
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

from trustd.cli._common import add_format_flag, is_json
from trustd.cli._format import go_json, go_time, humanize, parse_time, tab_columns, unix_nanos
from trustd.cli._grammar import FALSE_WORDS, TRUE_WORDS, no_opt_value
from trustd.cli._handoff import exec_root, require_root
from trustd.cli._net import (
    NET_INFO,
    add_net_flags,
    net_options,
    network_column,
    networks_of,
    pod_networks,
)
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


_T = TypeVar("_T")
_INFO = "info.json"  # trustd.privileged.pod.lifecycle.INFO, the public one
_SMALL = 1 << 16  # the public files list reads are a few dozen bytes; info.json a few KiB


_OPEN_SMALL = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _read_at(fd: int, name: str) -> str | None:
    """Read a small regular file beneath the pod dir ``fd`` (None when absent, a symlink, not
    a regular file or not ours to read): one open, fstat and read, no path re-resolved from
    the top (issue #14: ``rkt list`` of 1,000 pods)."""
    try:
        f = os.open(name, _OPEN_SMALL, dir_fd=fd)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:  # a symlink (ELOOP) or no permission: not a readable file
        if exc.errno in (errno.ELOOP, errno.EACCES):
            return None
        raise
    try:
        if not stat.S_ISREG(os.fstat(f).st_mode):
            return None
        return os.read(f, _SMALL).decode(errors="replace").strip()
    finally:
        os.close(f)


_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # the C scanner


def _json(text: str) -> Any:
    """``json.loads(text)`` of a file :func:`_read_at` read (stripped): the C scanner straight
    away when ``text`` is one JSON value, else ``json.loads`` itself, which then takes it or
    raises, so what decodes is exactly what ``json.loads`` decodes (as the store index's
    ``_loads``, ADR 0020 decision 12)."""
    try:
        value, end = _SCAN(text, 0)
    except (StopIteration, ValueError):
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def _reader(fd: int) -> Callable[[str], str | None]:
    """:func:`_read_at` bound to the pod dir ``fd``."""
    return functools.partial(_read_at, fd)


def _info(pod: Any, *, full: bool = True) -> dict[str, Any]:
    """A pod's public state, read beneath its directory, opened once. ``full=False`` (``rkt
    list``'s table) leaves out what the table does not show: the apps' exit codes,
    ``pod-finished`` and ``pid`` (issue #14: three opens of seven per pod)."""
    from trustd.privileged.pod import lifecycle  # noqa: PLC0415

    fd = os.open(pod.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return _info_at(fd, pod.uuid, pod.where, lifecycle, full=full)
    finally:
        os.close(fd)


def _info_at(fd: int, uuid: str, where: str, lifecycle: Any, *, full: bool) -> dict[str, Any]:
    """:func:`_info` of the pod directory ``fd``, ``pods/<where>/<uuid>``, whose caller
    closes ``fd`` at once after (that releases the lock test's shared lock);
    ``lifecycle``: :mod:`trustd.privileged.pod.lifecycle`, imported once by the caller."""
    read = _reader(fd)
    apps = []
    info = read(_INFO)  # public; plan.json (env, args) is root-only under private/
    for app in json.loads(info)["apps"] if info else []:
        code = read(f"apps/{app['name']}/exit") if full else None
        apps.append(
            {
                "name": app["name"],
                "image_id": app["image_key"],
                "image_name": app["image_name"],
                "exit_code": None if code is None else int(code),
            }
        )
    found = {
        "name": uuid,
        "apps": apps,
        "created": parse_time(read("pod-created")),
        "started": parse_time(read("pod-started")),
        "finished": parse_time(read("pod-finished")) if full else None,
        "pid": read("pid") if full else None,
        "networks": pod_networks(read),
    }
    # the lock test last: its shared lock is released by the close right after it (one
    # flock call, the lock held no longer than an explicit unlock would hold it)
    locked = lifecycle.locked_at(fd)
    return {"state": str(lifecycle.state_of(where, locked=locked))} | found


def _each_pod(options: GlobalOptions, visit: Callable[[int, str, str], _T]) -> list[_T]:
    """``visit(fd, uuid, where)`` of every pod, in :meth:`PodStore.pods` order: each state
    directory opened and listed once, each pod opened by its name beneath that fd (no path
    walked again from the top per pod, no path object built per pod); ``fd`` is closed
    here, at once after ``visit``."""
    from trustd.privileged.pod import lifecycle  # noqa: PLC0415

    root = _pods(options).root
    found = []
    for where in lifecycle.STATE_DIRS:
        try:
            base = os.open(root / where, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            continue
        try:
            for name in sorted(os.listdir(base)):  # noqa: PTH208 - an fd
                try:
                    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=base)
                except FileNotFoundError:  # removed since the listing
                    continue
                try:
                    found.append(visit(fd, name, where))
                finally:
                    os.close(fd)
        finally:
            os.close(base)
    return found


def _infos(options: GlobalOptions, *, full: bool) -> list[dict[str, Any]]:
    """Every pod's :func:`_info`, in :meth:`PodStore.pods` order."""
    from trustd.privileged.pod import lifecycle  # noqa: PLC0415

    def visit(fd: int, uuid: str, where: str) -> dict[str, Any]:
        return _info_at(fd, uuid, where, lifecycle, full=full)

    return _each_pod(options, visit)


# one pod's row of rkt list's table, as read: uuid, the apps' (name, image id, image name),
# state, pod-created, pod-started, net-info.json's networks
_Row = tuple[str, list[tuple[str, str, str]], str, str | None, str | None, list[dict[str, str]]]


def _rows(options: GlobalOptions) -> list[_Row]:
    """What ``rkt list``'s table shows of every pod, read as :func:`_info_at` reads it (the
    same files, checks, caps, errors and lock test) with no dict built per pod or app
    (issue #14)."""
    from trustd.privileged.pod import lifecycle  # noqa: PLC0415

    states = {
        where: (
            str(lifecycle.state_of(where, locked=False)),
            str(lifecycle.state_of(where, locked=True)),
        )
        for where in lifecycle.STATE_DIRS
    }

    def visit(fd: int, uuid: str, where: str) -> _Row:
        info = _read_at(fd, _INFO)
        apps = [
            (app["name"], app["image_key"], app["image_name"])
            for app in (_json(info)["apps"] if info else [])
        ]
        created = _read_at(fd, "pod-created")
        started = _read_at(fd, "pod-started")
        try:
            nets = networks_of(_read_at(fd, NET_INFO))
        except OSError:  # as pod_networks: a file that cannot be read shows no networks
            nets = []
        # the lock test last, as in _info_at: the close right after it releases the lock
        return (uuid, apps, states[where][lifecycle.locked_at(fd)], created, started, nets)

    return _each_pod(options, visit)


def _app_state(info: dict[str, Any], app: dict[str, Any]) -> str:
    if app["exit_code"] is not None:
        return "exited"
    return {"running": "running", "prepared": "created"}.get(info["state"], "unknown")


def api_pod(info: dict[str, Any]) -> dict[str, Any]:
    """rkt's api/v1 Pod (``list``/``status --format=json``): times in nanoseconds since the
    epoch, absent fields left out, as encoding/json's omitempty does."""

    def present(doc: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in doc.items() if v not in (None, [], {})}

    apps = [
        present(
            {
                "name": a["name"],
                "state": _app_state(info, a),
                "created_at": unix_nanos(info["created"]),
                "started_at": unix_nanos(info["started"]),
                "finished_at": unix_nanos(info["finished"]) if a["exit_code"] is not None else None,
                "exit_code": a["exit_code"],
                "image_id": a["image_id"],
            }
        )
        | {"image_id": a["image_id"]}
        for a in info["apps"]
    ]
    return present(
        {
            "name": info["name"],
            "state": info["state"],
            "app_names": [a["name"] for a in info["apps"]],
            "apps": apps,
            "created_at": unix_nanos(info["created"]),
            "started_at": unix_nanos(info["started"]),
            "networks": info.get("networks") or [],
        }
    ) | {"name": info["name"], "state": info["state"]}


def _when(value: Any, full: bool, now: datetime | None = None) -> str:
    if value is None:
        return ""
    return go_time(value) if full else humanize(value, now)


def run_list(args: argparse.Namespace) -> int:
    if is_json(args.format):
        infos = _infos(args.options, full=True)
        print(go_json([api_pod(i) for i in infos], pretty=args.format == "json-pretty"))
        return 0
    full = args.full
    legend = not args.no_legend
    # the table a column at a time (tab_columns: tab_text's text); rkt prints the pod's
    # cells on its first app's row only, and a pod without apps as one row of "-"
    uuids, names, images, ids = (["UUID"], ["APP"], ["IMAGE NAME"], ["IMAGE ID"])
    states, created, started, networks = (["STATE"], ["CREATED"], ["STARTED"], ["NETWORKS"])
    now = datetime.now(UTC)
    for uuid, apps, state, made, began, nets in _rows(args.options):
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
        while _info(pod)["started"] is None:
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
    info = _info(pod)
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

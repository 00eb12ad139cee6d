"""Pod commands: ``prepare``, ``run-prepared``, ``list``, ``status``, ``stop``, ``rm``, ``gc``,
``cat-manifest`` — rkt's flags and messages. ``list``/``status`` work for group rkt."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from trustd.cli.image import parse_duration
from trustd.cli.run import add_pod_flags, build_request, measure_config, policy_in_force
from trustd.shared.config import GlobalOptions
from trustd.shared.errors import UserError


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("prepare", parents=parents, help="prepare a pod (root)")
    add_pod_flags(p, running=False)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_prepare)
    rp = sub.add_parser("run-prepared", parents=parents, help="run a prepared pod (root)")
    rp.add_argument("--mds-register", action="store_true")
    rp.add_argument("uuid")
    rp.set_defaults(func=run_run_prepared)
    ls = sub.add_parser("list", parents=parents, help="list pods")
    ls.add_argument("--full", action="store_true")
    ls.add_argument("--no-legend", action="store_true")
    ls.add_argument("--format", choices=("", "json", "json-pretty"), default="")
    ls.set_defaults(func=run_list)
    st = sub.add_parser("status", parents=parents, help="show a pod's status")
    st.add_argument("--wait", nargs="?", const="true", default="false")
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


def _parts(options: GlobalOptions) -> tuple[Any, Any, Any]:
    from trustd.privileged.treestore.datadir import open_data_dir  # noqa: PLC0415
    from trustd.shared.keystore import Keystore  # noqa: PLC0415

    return (
        open_data_dir(options.dirs.data),
        Keystore(options.dirs.system_config, options.dirs.local_config),
        _pods(options),
    )


def run_prepare(args: argparse.Namespace) -> int:
    from trustd.privileged.executor.prepare import prepare, require_root  # noqa: PLC0415

    require_root()
    options = args.options
    request = build_request(args, options)
    data, keystore, pods = _parts(options)
    prepared = prepare(
        request,
        data,
        keystore,
        pods,
        policy=policy_in_force(options),
        measurement=measure_config(options).mode,
    )
    os.close(prepared.lock_fd)
    print(prepared.pod.uuid)
    return 0


def run_run_prepared(args: argparse.Namespace) -> int:
    from trustd.privileged.executor.run import run_prepared  # noqa: PLC0415

    data, keystore, pods = _parts(args.options)
    return run_prepared(
        args.uuid,
        data,
        keystore,
        pods,
        measure=measure_config(args.options),
        policy=policy_in_force(args.options),
        mds_register=args.mds_register,
    )


def _info(pod: Any) -> dict[str, Any]:
    def read(name: str) -> str | None:
        path = pod.path / name
        return path.read_text().strip() if path.is_file() else None

    apps = []
    plan = read("plan.json")
    for app in json.loads(plan)["apps"] if plan else []:
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
    }


def run_list(args: argparse.Namespace) -> int:
    infos = [_info(p) for p in _pods(args.options).pods()]
    if args.format:
        print(json.dumps(infos, indent=2 if args.format == "json-pretty" else None))
        return 0
    if not args.no_legend:
        print("UUID\tAPP\tIMAGE NAME\tSTATE\tCREATED\tSTARTED")
    for info in infos:
        uuid = info["name"] if args.full else info["name"][:8]
        for i, app in enumerate(info["apps"] or [{"name": "-", "image_name": "-"}]):
            head = f"{uuid}\t" if i == 0 else "\t"
            print(
                f"{head}{app['name']}\t{app['image_name']}\t{info['state']}\t"
                f"{info['created_at'] or ''}\t{info['started_at'] or ''}"
            )
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
    print(
        f"state={info['state']}\ncreated={info['created_at'] or ''}\n"
        f"started={info['started_at'] or ''}"
    )
    print(f"exited={'true' if info['state'] in ('exited', 'exited garbage') else 'false'}")
    for app in info["apps"]:
        if app["exit_code"] is not None:
            print(f"app-{app['name']}={app['exit_code']}")
    return 0


def run_stop(args: argparse.Namespace) -> int:
    for uuid in args.uuids:
        pod = _pods(args.options).find(uuid)
        if pod.state().value != "running":
            print(f'pod "{pod.uuid}" is already stopped', file=sys.stderr)
            continue
        sig = signal.SIGKILL if args.force else signal.SIGTERM
        for pidfile in (pod.path / "apps").glob("*/pid"):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text()), sig)
        print(f'"{pod.uuid}"')
    return 0


def _forget(pods: Any, pod: Any) -> None:
    """Remove a pod's directory and any cgroups it left (a killed init cannot clean up)."""
    from trustd.privileged.executor._isolate import destroy_pod_cgroups  # noqa: PLC0415
    from trustd.privileged.executor.prepare import load_plan  # noqa: PLC0415
    from trustd.privileged.isolation.selinux import McsAllocator  # noqa: PLC0415

    with contextlib.suppress(OSError, ValueError, KeyError):
        destroy_pod_cgroups(load_plan(pod))
    McsAllocator(pods.root.parent).release(pod.uuid)
    pods.remove(pod)


def _remove(pods: Any, uuid: str) -> None:
    pod = pods.find(uuid)
    if pod.locked():
        raise UserError(f'pod "{pod.uuid}" is currently running')
    fd = pod.lock()
    _forget(pods, pod)
    os.close(fd)
    print(f'"{pod.uuid}"')


def run_rm(args: argparse.Namespace) -> int:
    from trustd.privileged.executor.prepare import require_root  # noqa: PLC0415

    require_root()
    pods, failed = _pods(args.options), False
    for uuid in args.uuids:
        try:
            _remove(pods, uuid)
        except UserError as exc:
            print(f"rm: {exc.message}", file=sys.stderr)
            failed = True
    if failed:
        raise UserError("failed to remove one or more pods")
    return 0


def run_gc(args: argparse.Namespace) -> int:
    from trustd.privileged.executor.prepare import require_root  # noqa: PLC0415

    require_root()
    pods = _pods(args.options)
    now = time.time()
    for pod in list(pods.pods()):
        state = pod.state().value
        if state == "exited":
            print(f'gc: moving pod "{pod.uuid}" to garbage', file=sys.stderr)
            pods.move(pod, "exited-garbage")
        elif state == "aborted prepare" or (
            state == "prepared"
            and now - pod.path.stat().st_ctime > args.expire_prepared.total_seconds()
        ):
            print(
                f"gc: moving {'failed prepare' if state != 'prepared' else 'expired prepared pod'}"
                f' "{pod.uuid}" to garbage',
                file=sys.stderr,
            )
            pods.move(pod, "garbage")
    if args.mark_only:
        return 0
    for pod in list(pods.pods()):
        if pod.where not in ("exited-garbage", "garbage") or pod.locked():
            continue
        age = timedelta(seconds=time.time() - pod.path.stat().st_ctime)
        if age < args.grace_period:
            print(
                f'gc: pod "{pod.uuid}" not removed: still within grace period '
                f"({args.grace_period})",
                file=sys.stderr,
            )
            continue
        print(f'Garbage collecting pod "{pod.uuid}"')
        _forget(pods, pod)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from trustd.privileged.executor.export import export  # noqa: PLC0415

    export(_pods(args.options).find(args.uuid), args.app, args.output, overwrite=args.overwrite)
    return 0


def run_cat(args: argparse.Namespace) -> int:
    pod = _pods(args.options).find(args.uuids[0])
    print((pod.path / "pod").read_text())
    return 0

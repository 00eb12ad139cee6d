"""What group rkt may read of the pods: each pod's public files read beneath its directory fd
(``O_NOFOLLOW|O_NONBLOCK``, regular files only, capped), every state directory listed once,
the lock test last (``rkt list``, ``rkt status``; issue #14 at 1,000 pods)."""

from __future__ import annotations

import errno
import functools
import json
import os
import stat
from collections.abc import Callable
from typing import Any, TypeVar

from trustd.cli._format import parse_time, unix_nanos
from trustd.cli._net import NET_INFO, networks_of, pod_networks
from trustd.shared._jsonexact import loads_exact
from trustd.shared.config import GlobalOptions

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


def _reader(fd: int) -> Callable[[str], str | None]:
    """:func:`_read_at` bound to the pod dir ``fd``."""
    return functools.partial(_read_at, fd)


def pod_info(pod: Any, *, full: bool = True) -> dict[str, Any]:
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
    """:func:`pod_info` of the pod directory ``fd``, ``pods/<where>/<uuid>``, whose caller
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

    root = lifecycle.PodStore(options.dirs.data).root
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


def pod_infos(options: GlobalOptions, *, full: bool) -> list[dict[str, Any]]:
    """Every pod's :func:`pod_info`, in :meth:`PodStore.pods` order."""
    from trustd.privileged.pod import lifecycle  # noqa: PLC0415

    def visit(fd: int, uuid: str, where: str) -> dict[str, Any]:
        return _info_at(fd, uuid, where, lifecycle, full=full)

    return _each_pod(options, visit)


# one pod's row of rkt list's table, as read: uuid, the apps' (name, image id, image name),
# state, pod-created, pod-started, net-info.json's networks
_Row = tuple[str, list[tuple[str, str, str]], str, str | None, str | None, list[dict[str, str]]]


def list_rows(options: GlobalOptions) -> list[_Row]:
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
            for app in (loads_exact(info)["apps"] if info else [])
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

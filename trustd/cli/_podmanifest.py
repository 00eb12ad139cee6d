"""``rkt run|prepare --pod-manifest=FILE``: an appc PodManifest as the typed run request.

The file is read here, with the caller's rights; root gets only the request (image IDs, app
overrides), never the path. What the request cannot carry is refused with the field named,
never dropped: a pod manifest that asks for isolation must get it or not run.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from trustd.cli._common import read_input
from trustd.cli._net import net_options
from trustd.shared.config import GlobalOptions
from trustd.shared.errors import UserError
from trustd.shared.net import NetOptions
from trustd.shared.request import AppRequest, Mount, RunRequest, Volume

_APP_KEYS = {
    "exec",
    "user",
    "group",
    "supplementaryGIDs",
    "workingDirectory",
    "environment",
    "isolators",
    "mountPoints",  # declarations; the pod manifest's ``mounts`` bind them
    "userAnnotations",
    "userLabels",
}
_CAPS = ("os/linux/capabilities-retain-set", "os/linux/capabilities-remove-set")
_SECCOMP = ("os/linux/seccomp-retain-set", "os/linux/seccomp-remove-set")


def _fail(where: str, why: str) -> UserError:
    return UserError(
        f"--pod-manifest: {where}: {why}",
        hint="see appc's pod manifest schema (spec/pods.md); unsupported fields are refused",
    )


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, "must be an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(where, "must be a list")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, "must be a string")
    return value


def _pairs(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    """``[{name, value}]`` (appc's lists) or ``{k: v}`` (userAnnotations, userLabels)."""
    if isinstance(value, dict):
        return tuple((_str(k, where), _str(v, f"{where}.{k}")) for k, v in value.items())
    items = [_obj(x, f"{where}[{i}]") for i, x in enumerate(_list(value, where))]
    return tuple((_str(x.get("name"), where), _str(x.get("value"), where)) for x in items)


def _isolators(value: Any, where: str) -> dict[str, Any]:
    """appc isolators -> AppRequest fields (rkt's flag spellings); others are refused."""
    out: dict[str, Any] = {}
    for i, item in enumerate(_list(value, where)):
        at = f"{where}[{i}]"
        iso = _obj(item, at)
        name, val = _str(iso.get("name"), at), iso.get("value")
        if name in ("resource/memory", "resource/cpu"):
            out[name.split("/")[1]] = str(_obj(val, at).get("limit"))
        elif name in _CAPS:
            caps = tuple(_str(c, at) for c in _list(_obj(val, at).get("set"), at))
            out["caps_retain" if name.endswith("retain-set") else "caps_remove"] = caps
        elif name in _SECCOMP:
            val = _obj(val, at)
            mode = "retain" if name.endswith("retain-set") else "remove"
            errno = [f"errno={_str(val['errno'], at)}"] if "errno" in val else []
            calls = [_str(c, at) for c in _list(val.get("set"), at)]
            out["seccomp"] = ",".join([f"mode={mode}", *errno, *calls])
        elif name in ("os/linux/oom-score-adj", "os/linux/cpu-shares") and isinstance(val, int):
            out["oom_score_adj" if "oom" in name else "cpu_shares"] = val
        else:
            raise _fail(at, f"isolator {name!r} is not supported in a pod manifest here")
    return out


def _app(doc: Mapping[str, Any], i: int, options: GlobalOptions) -> AppRequest:
    from trustd.cli._store import full_key  # noqa: PLC0415
    from trustd.shared.imageid import StoreKey  # noqa: PLC0415

    where = f"apps[{i}]"
    image = _obj(doc.get("image"), f"{where}.image")
    ident = _str(image.get("id"), f"{where}.image.id")
    try:
        key = StoreKey(ident).id
    except ValueError:
        key = full_key(options, ident, touch=True).id
    app = _obj(doc.get("app") or {}, f"{where}.app")
    if unknown := sorted(set(app) - _APP_KEYS):
        raise _fail(f"{where}.app", f"field(s) {', '.join(unknown)} not supported")
    gids = app.get("supplementaryGIDs")
    mounts = [_obj(m, f"{where}.mounts") for m in _list(doc.get("mounts"), f"{where}.mounts")]
    exec_ = app.get("exec")
    return AppRequest(
        image=key,
        name=_str(doc.get("name"), f"{where}.name"),
        exec=tuple(_str(a, f"{where}.app.exec") for a in _list(exec_, "exec")) or None,
        env=_pairs(app.get("environment"), f"{where}.app.environment"),
        user=app.get("user"),
        group=app.get("group"),
        working_dir=app.get("workingDirectory") or None,
        readonly_rootfs=doc.get("readOnlyRootFS") is True,
        mounts=tuple(
            Mount(_str(m.get("volume"), where), _str(m.get("path"), where)) for m in mounts
        ),
        supplementary_gids=None if gids is None else tuple(_list(gids, "supplementaryGIDs")),
        annotations=_pairs(doc.get("annotations"), f"{where}.annotations"),
        user_annotations=_pairs(app.get("userAnnotations") or {}, f"{where}.userAnnotations"),
        user_labels=_pairs(app.get("userLabels") or {}, f"{where}.userLabels"),
        **_isolators(app.get("isolators"), f"{where}.app.isolators"),
    )


def _volume(doc: Any, i: int) -> Volume:
    where = f"volumes[{i}]"
    doc = _obj(doc, where)
    kind = doc.get("kind")
    if kind not in ("host", "empty"):
        raise _fail(where, f"kind {kind!r} is not host or empty")
    source = doc.get("source") if kind == "host" else None
    return Volume(_str(doc.get("name"), where), kind, source, doc.get("readOnly") is True)


def request_from_manifest(args: argparse.Namespace, options: GlobalOptions) -> RunRequest:
    from trustd.cli.run import flavor  # noqa: PLC0415

    data = read_input(args.pod_manifest, "--pod-manifest", 1 << 20)
    try:
        doc = _obj(json.loads(data), "the document")
    except ValueError as exc:
        raise _fail(str(args.pod_manifest), f"not JSON ({exc})") from exc
    if doc.get("acKind") != "PodManifest":
        raise _fail("acKind", f"{doc.get('acKind')!r} is not PodManifest")
    if _list(doc.get("isolators"), "isolators") or _list(doc.get("ports"), "ports"):
        raise _fail("isolators/ports", "pod-level isolators and ports are not supported")
    apps = tuple(
        _app(_obj(a, "apps"), i, options) for i, a in enumerate(_list(doc["apps"], "apps"))
    )
    if not apps:
        raise UserError("pod must contain at least one application")
    try:
        volumes = tuple(_volume(v, i) for i, v in enumerate(_list(doc.get("volumes"), "volumes")))
    except ValueError as exc:
        raise _fail("volumes", str(exc)) from exc
    return RunRequest(
        apps=apps,
        flavor=flavor(args),
        network=net_options(args) or NetOptions(),
        hostname=getattr(args, "hostname", None),
        volumes=volumes,
        insecure=options.insecure,
        mds_register=getattr(args, "mds_register", False),
        ipc=getattr(args, "ipc", "auto"),
        overlay=not args.no_overlay,
    )

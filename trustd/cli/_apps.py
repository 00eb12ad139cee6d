"""rkt's per-app flags (they follow the image they apply to) and image resolution for run.

Images given by name or file are fetched through the fetch path (as root: an unprivileged
child); IDs and prefixes are resolved in the index with the group's rights. Only the full
image ID (sha512- and 128 hex, checked) reaches the executor.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from trustd.shared.config import GlobalOptions
from trustd.shared.errors import UserError
from trustd.shared.request import AppRequest, Mount, Volume

BOOL_FLAGS = {"--readonly-rootfs"}
VALUE_FLAGS = {
    "--exec",
    "--set-env",
    "--environment",
    "--user",
    "--group",
    "--working-dir",
    "--mount",
    "--name",
    "--memory",
    "--cpu",
    "--caps-retain",
    "--caps-remove",
    "--seccomp",
    "--signature",
}


def parse_volume(text: str) -> Any:
    """``NAME,kind=host|empty,source=PATH,readOnly=BOOL`` (rkt's --volume); strict: an
    unknown option, a repeated one or ``readOnly=maybe`` is refused, never read as false."""
    from trustd.shared.appc.identifier import ACName  # noqa: PLC0415

    usage = "--volume NAME,kind=host,source=/path[,readOnly=true]"
    name, *rest = text.split(",")
    opts: dict[str, str] = {}
    for part in rest:
        key, eq, value = part.partition("=")
        if not eq or key not in ("kind", "source", "readOnly") or key in opts:
            raise UserError(f"bad --volume {text!r}: option {part!r}", hint=usage)
        opts[key] = value
    kind = opts.get("kind", "empty")
    readonly = opts.get("readOnly", "false")
    bad = (
        kind not in ("host", "empty")
        or (kind == "host") != bool(opts.get("source"))
        or readonly not in ("true", "false")
    )
    if bad:
        raise UserError(f"bad --volume {text!r}", hint=usage)
    ACName(name)  # rkt: a volume name is an AC Name
    source = opts["source"] if kind == "host" else None
    return Volume(name, "host" if kind == "host" else "empty", source, readonly == "true")


def _tokens(words: list[str]) -> Iterator[tuple[str, str | None, list[str]]]:
    """(image, None, []) / (flag, value, []) / ("--", None, args) events, in order."""
    it = iter(words)
    for word in it:
        if word == "--":
            args: list[str] = []
            for arg in it:
                if arg == "---":
                    break
                args.append(arg)
            yield "--", None, args
        elif word.startswith("--"):
            flag, eq, value = word.partition("=")
            if flag in BOOL_FLAGS:
                yield flag, value or "true", []
            elif flag in VALUE_FLAGS:
                yield flag, value if eq else next(it, None), []
            else:
                raise UserError(f"unknown app flag {flag!r}", hint="see: rkt run --help")
        else:
            yield word, None, []


def _split_apps(words: list[str]) -> list[dict[str, Any]]:
    apps: list[dict[str, Any]] = []
    for key, value, args in _tokens(words):
        if not key.startswith("--"):
            apps.append({"image": key, "flags": [], "args": []})
        elif not apps:
            raise UserError(f"{key} must follow an image")
        elif key == "--":
            apps[-1]["args"] = args
        elif value is None:
            raise UserError(f"{key} needs a value")
        else:
            apps[-1]["flags"].append((key, value))
    if not apps:
        raise UserError("must provide at least one image")
    return apps


def _image_key(text: str, signature: str | None, options: GlobalOptions, policy: str) -> str:
    from trustd.cli._store import full_key  # noqa: PLC0415
    from trustd.shared.store import StoreKey  # noqa: PLC0415

    try:
        return StoreKey(text).id  # a full ID needs no index: root checks the bytes against it
    except ValueError:
        pass
    if text.startswith("sha512-"):
        return full_key(options, text, touch=True).id
    from pathlib import Path  # noqa: PLC0415

    from trustd.cli.fetch import fetch_context, fetch_one  # noqa: PLC0415
    from trustd.unprivileged.fetch import FetchRequest, parse_image_ref  # noqa: PLC0415

    request = FetchRequest(parse_image_ref(text), Path(signature) if signature else None)
    return fetch_one(request, fetch_context(options, policy), touch=True)


def _requested_name(text: str) -> tuple[str | None, str | None]:
    """name and version of an image given by appc name (root checks its manifest says so)."""
    if text.startswith("sha512-"):
        return None, None
    from trustd.unprivileged.fetch import parse_image_ref  # noqa: PLC0415

    ref = parse_image_ref(text)
    if ref.kind != "name" or ref.name is None:
        return None, None
    return str(ref.name), dict(ref.labels).get("version")


def _app(spec: dict[str, Any], options: GlobalOptions, policy: str) -> Any:

    flags: dict[str, str] = {}
    env: list[tuple[str, str]] = []
    mounts: list[Any] = []
    for key, value in spec["flags"]:
        if key in ("--set-env", "--environment"):
            name, _, val = value.partition("=")
            env.append((name, val))
        elif key == "--mount":
            opts = dict(p.partition("=")[::2] for p in value.split(","))
            mounts.append(Mount(opts.get("volume", ""), opts.get("target", "")))
        else:
            flags[key] = value

    def split(key: str) -> tuple[str, ...]:
        return tuple(x for x in flags.get(key, "").split(",") if x)

    expected_name, expected_version = _requested_name(spec["image"])
    return AppRequest(
        image=_image_key(spec["image"], flags.get("--signature"), options, policy),
        expected_name=expected_name,
        expected_version=expected_version,
        name=flags.get("--name"),
        exec=(flags["--exec"],) if "--exec" in flags else None,
        args=tuple(spec["args"]),
        env=tuple(env),
        user=flags.get("--user"),
        group=flags.get("--group"),
        working_dir=flags.get("--working-dir"),
        readonly_rootfs=flags.get("--readonly-rootfs") == "true",
        mounts=tuple(mounts),
        caps_retain=split("--caps-retain"),
        caps_remove=split("--caps-remove"),
        seccomp=flags.get("--seccomp"),
        memory=flags.get("--memory"),
        cpu=flags.get("--cpu"),
    )


def app_requests(words: list[str], options: GlobalOptions, policy: str) -> tuple[Any, ...]:
    return tuple(_app(spec, options, policy) for spec in _split_apps(words))

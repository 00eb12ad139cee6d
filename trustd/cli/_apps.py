"""rkt's per-app flags (they follow the image they apply to) and image resolution for run.

Images given by name or file are fetched through the fetch path (as root: an unprivileged
child); IDs and prefixes are resolved in the index with the group's rights. Only the full
image ID (sha512- and 128 hex, checked) reaches the executor.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from trustd.shared.config import GlobalOptions
from trustd.shared.errors import UserError
from trustd.shared.request import AppRequest, Mount, Volume

# rkt's per-app flags (rkt/cli_apps.go, run.go addAppFlags/addIsolatorFlags): each applies to
# the image before it. name -> help; ``--readonly-rootfs`` alone is ``=true``.
APP_FLAGS: dict[str, str] = {
    "--signature": "local signature file to use in validating the preceding image",
    "--exec": "override the exec command for the preceding image",
    "--working-dir": "override the working directory of the preceding image",
    "--readonly-rootfs": "if set, the app's rootfs will be mounted read-only",
    "--mount": "mount point binding a volume to a path within an app (volume=NAME,target=PATH);"
    " before any image it applies to all apps",
    "--user": "user override for the preceding image (example: '--user=user')",
    "--group": "group override for the preceding image (example: '--group=group')",
    "--supplementary-gids": "supplementary group IDs override for the preceding image "
    "(example: '--supplementary-gids=1024,2048')",
    "--name": "set the name of the app (example: '--name=foo'); default: from the image's name",
    "--annotation": "set an annotation of the app (example: '--annotation=foo=bar')",
    "--user-annotation": "set the app's annotations (example: '--user-annotation=foo=bar')",
    "--user-label": "set the app's labels (example: '--user-label=foo=bar')",
    "--environment": "set the app's environment variables (example: '--environment=foo=bar')",
    "--memory": "memory limit for the preceding image (example: '--memory=50M')",
    "--cpu": "cpu limit for the preceding image (example: '--cpu=500m')",
    "--cpu-shares": "cpu-shares assigns the specified CPU time share weight "
    "(example: '--cpu-shares=2048')",
    "--caps-retain": "capability to retain (example: '--caps-retain=CAP_SYS_ADMIN')",
    "--caps-remove": "capability to remove (example: '--caps-remove=CAP_MKNOD')",
    "--seccomp": "seccomp filter override (example: '--seccomp mode=retain,errno=EPERM,chmod')",
    "--oom-score-adj": "oom-score-adj isolator override (-1000 to 1000)",
}
BOOL_FLAGS = {"--readonly-rootfs"}
ALIASES = {"--cap-retain": "--caps-retain", "--cap-remove": "--caps-remove"}  # deprecated
VALUE_FLAGS = set(APP_FLAGS) - BOOL_FLAGS
MAX_GIDS = 65536  # NGROUPS_MAX
_PER_APP_HINT = "put it after the image it applies to: rkt run IMAGE FLAG=VALUE"


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
            flag = ALIASES.get(flag, flag)
            if flag in BOOL_FLAGS:
                from trustd.cli._grammar import parse_bool  # noqa: PLC0415

                yield flag, "true" if not eq or parse_bool(flag, value) else "false", []
            elif flag in VALUE_FLAGS:
                yield flag, value if eq else next(it, None), []
            else:
                raise UserError(f"unknown app flag {flag!r}", hint="see: rkt run --help")
        else:
            yield word, None, []


def _split_apps(words: list[str], *, required: bool = True) -> list[dict[str, Any]]:
    apps: list[dict[str, Any]] = []
    for key, value, args in _tokens(words):
        if not key.startswith("--"):
            apps.append({"image": key, "flags": [], "args": []})
        elif not apps:
            if key == "--":
                raise UserError("an image is required before any app arguments")
            raise UserError(f"{key} must follow an image", hint=_PER_APP_HINT)
        elif key == "--":
            if apps[-1]["args"]:
                raise UserError("only one set of app arguments allowed per image")
            apps[-1]["args"] = args
        elif value is None:
            raise UserError(f"{key} needs a value")
        else:
            apps[-1]["flags"].append((key, value))
    if not apps and required:
        raise UserError("must provide at least one image or specify the pod manifest")
    return apps


def _image_key(
    text: str,
    signature: str | None,
    options: GlobalOptions,
    policy: str,
    resolved: Mapping[str, Any],
) -> str:
    from trustd.cli._store import full_key  # noqa: PLC0415
    from trustd.shared.store import StoreKey  # noqa: PLC0415

    try:
        return StoreKey(text).id  # a full ID needs no index: root checks the bytes against it
    except ValueError:
        pass
    if text in resolved:  # looked up (and stamped) already, all in one child
        return str(resolved[text].id)
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


def parse_mount(text: str) -> Mount:
    """``volume=NAME,target=PATH`` (rkt's --mount); strict, as rkt's ``appMount.Set``."""
    from trustd.shared.appc.identifier import ACName  # noqa: PLC0415

    opts: dict[str, str] = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if key not in ("volume", "target"):
            raise UserError(f"unknown mount parameter {key!r}", hint=USAGE_MOUNT)
        if key in opts or not eq:
            raise UserError(f"bad --mount {text!r}: {part!r}", hint=USAGE_MOUNT)
        opts[key] = value
    if not opts.get("volume") or not opts.get("target", "").startswith("/"):
        raise UserError(f"bad --mount {text!r}: volume and an absolute target", hint=USAGE_MOUNT)
    try:
        ACName(opts["volume"])
    except (ValueError, UserError) as exc:
        raise UserError(f"invalid volume name {opts['volume']!r} in --mount flag {text!r}") from exc
    return Mount(opts["volume"], opts["target"])


USAGE_MOUNT = "--mount volume=NAME,target=/path"


def parse_pair(flag: str, text: str) -> tuple[str, str]:
    """``KEY=VALUE`` (rkt's kvMap); the key may not be empty."""
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise UserError(f"invalid value {text!r} for {flag}: must be specified as key=value")
    return key, value


def _pairs(flag: str, values: list[str]) -> tuple[tuple[str, str], ...]:
    seen: dict[str, str] = {}
    for text in values:
        key, value = parse_pair(flag, text)
        if key in seen:
            raise UserError(f'{flag}: key "{key}" already set')
        seen[key] = value
    return tuple(seen.items())


def _int(flag: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise UserError(f"invalid {flag} {text!r}", hint=f"give an integer from {low} to {high}")
    return value


def parse_gids(text: str) -> tuple[int, ...]:
    """``--supplementary-gids=1024,2048``: group IDs 0 to 4294967294 (-1 is no group)."""
    gids = tuple(_int("--supplementary-gids", g, 0, 2**32 - 2) for g in text.split(","))
    if len(gids) > MAX_GIDS:
        raise UserError(f"--supplementary-gids: {len(gids)} groups, over {MAX_GIDS}")
    return gids


def _app(
    spec: dict[str, Any], options: GlobalOptions, policy: str, resolved: Mapping[str, Any]
) -> Any:
    flags: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    mounts: list[Any] = []
    for key, value in spec["flags"]:
        if key == "--mount":
            mounts.append(parse_mount(value))
        elif key in ("--environment", "--annotation", "--user-annotation", "--user-label"):
            lists.setdefault(key, []).append(value)
        elif key in flags:
            raise UserError(f"{key} specified multiple times for the same image")
        else:
            flags[key] = value

    def split(key: str) -> tuple[str, ...]:
        return tuple(x for x in flags.get(key, "").split(",") if x)

    def optional_int(key: str, low: int, high: int) -> int | None:
        return _int(key, flags[key], low, high) if key in flags else None

    expected_name, expected_version = _requested_name(spec["image"])
    return AppRequest(
        image=_image_key(spec["image"], flags.get("--signature"), options, policy, resolved),
        expected_name=expected_name,
        expected_version=expected_version,
        name=flags.get("--name"),
        exec=(flags["--exec"],) if "--exec" in flags else None,
        args=tuple(spec["args"]),
        env=_pairs("--environment", lists.get("--environment", [])),
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
        supplementary_gids=parse_gids(flags["--supplementary-gids"])
        if "--supplementary-gids" in flags
        else None,
        annotations=_pairs("--annotation", lists.get("--annotation", [])),
        user_annotations=_pairs("--user-annotation", lists.get("--user-annotation", [])),
        user_labels=_pairs("--user-label", lists.get("--user-label", [])),
        cpu_shares=optional_int("--cpu-shares", 2, 262144),
        oom_score_adj=optional_int("--oom-score-adj", -1000, 1000),
    )


def app_requests(
    words: list[str],
    options: GlobalOptions,
    policy: str,
    *,
    required: bool = True,
    resolved: Mapping[str, Any] | None = None,
) -> tuple[Any, ...]:
    """The apps' requests; ``resolved``: image ID prefixes already looked up (ref -> StoreKey)."""
    specs = _split_apps(words, required=required)
    return tuple(_app(spec, options, policy, resolved or {}) for spec in specs)

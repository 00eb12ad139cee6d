"""``rkt run``: fetch what is missing (unprivileged), then hand the pod to the root program.

    rkt run [pod flags] IMAGE [app flags] [-- ARGS... [---]] [IMAGE [app flags] ...]

The exit status is rkt's: 0 when every app exits 0, else the first failing app's (ADR 0017);
trustd's own failures are 254.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from trustd.cli._apps import ALIASES, APP_FLAGS, BOOL_FLAGS, app_requests, parse_mount, parse_volume
from trustd.cli._grammar import interspersed
from trustd.cli._handoff import exec_root, require_root
from trustd.cli._net import add_net_flags, net_options
from trustd.cli.fetch import add_deprecated_store_flags, deprecated_pull_policy
from trustd.shared.config import GlobalOptions
from trustd.shared.errors import UserError
from trustd.shared.insecure import Insecure, warn_insecure
from trustd.shared.net import NetOptions
from trustd.shared.request import IPC_MODES, Run, RunRequest
from trustd.shared.vocab import STAGE1_NAMES, Flavor

RUN_EPILOG = """The per-app flags follow the image they apply to; --mount before any image
applies to every app (and an app's own --mount wins for the same path). The pod's flags may
stand anywhere. An "--" after an image passes what follows to that app's exec; a lone "---"
ends it."""


def _per_app_only(p: argparse.ArgumentParser) -> None:
    """The per-app flags, listed in --help; given before any image (except --mount) they
    are rkt's error ``--exec must follow an image``."""
    group = p.add_argument_group("per-app flags (after the image they apply to)")
    for flag, text in APP_FLAGS.items():
        if flag != "--mount":
            group.add_argument(
                flag, action=_MustFollow, help=text, dest="_unused_app_flag", metavar="VALUE"
            )


class _MustFollow(argparse.Action):
    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        if option_strings[0] in BOOL_FLAGS:
            kwargs["nargs"] = 0
            kwargs.pop("metavar", None)
        kwargs["default"] = argparse.SUPPRESS
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        raise UserError(f"{self.option_strings[0]} must follow an image", hint=_HINT)


_HINT = "put it after the image it applies to: rkt run IMAGE --exec=/bin/sh"


def add_pod_flags(p: argparse.ArgumentParser, *, running: bool) -> None:
    p.add_argument(
        "--pull-policy",
        choices=("never", "new", "update"),
        default="new",
        help="when to fetch an image: never, new (if not in the store; default) or update",
    )
    p.add_argument(
        "--volume",
        action="append",
        default=[],
        type=parse_volume,
        help="volumes to make available in the pod (NAME,kind=host|empty,source=PATH,"
        "readOnly=BOOL)",
    )
    p.add_argument(
        "--mount",
        action="append",
        default=[],
        type=parse_mount,
        dest="pod_mounts",
        help="before any image: mount a volume in every app (volume=NAME,target=PATH)",
    )
    p.add_argument("--stage1-name", default="container", help="container (default) or fly")
    p.add_argument("--stage1-path", type=Path, help="a stage1 descriptor file (JSON)")
    p.add_argument(
        "--private-users",
        action="store_true",
        help="run the pod in a user namespace: its root is an unprivileged uid on the host",
    )
    p.add_argument(
        "--inherit-env",
        action="store_true",
        help="inherit all environment variables not set by apps",
    )
    p.add_argument(
        "--set-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment variable to set for all the apps in the form key=value, this will be "
        "overridden by --environment",
    )
    p.add_argument(
        "--set-env-file",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="path to an environment variables file (NAME=VALUE lines; # or ; comments)",
    )
    p.add_argument(
        "--pod-manifest",
        type=Path,
        metavar="FILE",
        help="the path to the pod manifest. If it's non-empty, then only '--net', "
        "'--no-overlay' and '--interactive' will have effect",
    )
    p.add_argument("--no-overlay", action="store_true", help="disable overlay filesystem")
    add_deprecated_store_flags(p)
    add_net_flags(p, ports=True, dns=running)  # network flags: trustd/cli/_net.py
    if running:
        p.add_argument("--hostname", help='pod\'s hostname. If empty, it will be "rkt-$PODUUID"')
        p.add_argument(
            "--interactive",
            action="store_true",
            help="run pod interactively. If true, only one image may be supplied.",
        )
        p.add_argument("--uuid-file-save", type=Path, help="write out pod UUID to specified file")
        p.add_argument(
            "--mds-register",
            action="store_true",
            help="serve the appc metadata service to the pod (AC_METADATA_URL)",
        )
        add_ipc_flag(p)
    _per_app_only(p)
    p.add_argument(
        "images",
        nargs=argparse.REMAINDER,
        metavar="IMAGE [app flags] [-- args]",
        help="images to run, each followed by its per-app flags",
    )
    p.set_defaults(**interspersed(p, {*APP_FLAGS, *ALIASES}, app_args=True))


def add_ipc_flag(p: argparse.ArgumentParser, *, default: str | None = "auto") -> None:
    """``--ipc``; run-prepared's default None keeps the prepared pod's mode."""
    p.add_argument(
        "--ipc",
        choices=IPC_MODES,
        default=default,
        help="whether to stay in the host IPC namespace: auto or private (a new one; "
        + ("default" if default else "default: as prepared")
        + "), parent (the host's; the policy may refuse it)",
    )


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        parents=parents,
        help="run image(s) in a pod (root)",
        usage="rkt run [pod flags] IMAGE [app flags] [-- image-args... [---]]...",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_pod_flags(p, running=True)
    p.set_defaults(func=run)


def flavor(args: argparse.Namespace) -> Flavor:
    if args.stage1_path is not None:
        import json  # noqa: PLC0415

        try:
            name = json.loads(args.stage1_path.read_text())["flavor"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"bad stage1 descriptor {args.stage1_path}: {exc}") from exc
    else:
        name = args.stage1_name
    if name not in STAGE1_NAMES:
        raise UserError(f"unknown stage1 {name!r}", hint=f"use one of: {', '.join(STAGE1_NAMES)}")
    return STAGE1_NAMES[name]


def build_request(args: argparse.Namespace, options: GlobalOptions) -> RunRequest:
    """The typed request; a field its own checks refuse is a user error naming it."""
    try:
        return _build_request(args, options)
    except ValueError as exc:
        raise UserError(str(exc), hint="see: rkt run --help") from exc


def _build_request(args: argparse.Namespace, options: GlobalOptions) -> RunRequest:
    from trustd.cli._stage1 import store_stage1_image, uses_the_store  # noqa: PLC0415

    policy = deprecated_pull_policy(args, args.pull_policy)
    if args.pod_manifest is not None:
        from trustd.cli._podmanifest import request_from_manifest  # noqa: PLC0415

        _no_conflicts(args, policy)
        request: RunRequest = request_from_manifest(args, options)
        return request
    resolved, stamped, guess = _look_up_at_once(args, options)
    apps = app_requests(args.images, options, policy, resolved=resolved)
    if getattr(args, "interactive", False) and len(apps) > 1:
        raise UserError("interactive option only supports one image")
    chosen = flavor(args)
    # rkt stores the stage1 it runs (docs/adr/0018); found and stamped above, it is stored
    if uses_the_store(args.images) and not (stamped and chosen == guess):
        store_stage1_image(options, chosen)
    return RunRequest(
        apps=apps,
        flavor=chosen,
        network=net_options(args) or NetOptions(),
        hostname=getattr(args, "hostname", None),
        volumes=tuple(args.volume),
        insecure=options.insecure,
        mds_register=getattr(args, "mds_register", False),
        private_users=getattr(args, "private_users", False),
        interactive=getattr(args, "interactive", False),
        inherited_env=inherited_env() if args.inherit_env else (),
        env=pod_env(args.set_env_file, args.set_env),
        mounts=tuple(args.pod_mounts),
        ipc=getattr(args, "ipc", "auto"),
        overlay=not args.no_overlay,
    )


def _look_up_at_once(
    args: argparse.Namespace, options: GlobalOptions
) -> tuple[dict[str, Any], bool, Flavor | None]:
    """As root, when every image is an ID prefix or a full ID: one index lookup child
    resolves and stamps them all and stamps the stage1 image (issue #14). Returns the
    resolved refs, whether the stage1 of the flavor guessed here was stamped, and that
    flavor; ({}, False, None) when this does not apply, and the usual path runs."""
    from trustd.cli._stage1 import prefixes_only, stage1_key  # noqa: PLC0415
    from trustd.cli._store import run_keys  # noqa: PLC0415

    if os.geteuid() != 0 or not args.images:
        return {}, False, None
    try:
        prefixes = prefixes_only(args.images)
        guess: Flavor | None = flavor(args)
    except UserError:  # the usual path reports it, in its order
        return {}, False, None
    if not prefixes or guess is None:
        return {}, False, None
    resolved, stamped = run_keys(options, prefixes, stage1_key(guess))
    return dict(resolved), stamped, guess


def _no_conflicts(args: argparse.Namespace, policy: str) -> None:
    """rkt's run.go: with --pod-manifest, no images, volumes, mounts, ports, environment or
    pull policy other than new."""
    if (
        args.images
        or args.volume
        or args.pod_mounts
        or getattr(args, "port", None)
        or policy in ("never", "update")
        or args.inherit_env
        or args.set_env
        or args.set_env_file
    ):
        raise UserError("conflicting flags set with --pod-manifest (see --help)")


def inherited_env() -> tuple[tuple[str, str], ...]:
    """--inherit-env: the caller's environment (the root program keeps none of it)."""
    return tuple((k, v) for k, v in os.environ.items() if k and "=" not in k)


def pod_env(files: list[Path], pairs: list[str]) -> tuple[tuple[str, str], ...]:
    """--set-env-file entries, then --set-env (rkt's precedence: --set-env wins); a name set
    twice by the same flag is rkt's error."""
    from trustd.cli._apps import parse_pair  # noqa: PLC0415
    from trustd.cli._common import read_input  # noqa: PLC0415

    merged: dict[str, str] = {}
    from_files: dict[str, str] = {}
    for path in files:
        text = read_input(path, "--set-env-file", 1 << 20).decode("utf-8", "replace")
        for line in text.splitlines():
            if not line or line.startswith(("#", ";")):
                continue
            name, eq, value = line.partition("=")
            if not eq or not name:
                raise UserError(
                    f'environment variable must be specified as name=value (file "{path}")'
                )
            if name in from_files:
                raise UserError(f'environment variable "{name}" already set (file "{path}")')
            from_files[name] = value
    merged.update(from_files)
    seen: set[str] = set()
    for text in pairs:
        name, value = parse_pair("--set-env", text)
        if name in seen:
            raise UserError(f'--set-env: key "{name}" already set')
        seen.add(name)
        merged[name] = value
    return tuple(merged.items())


def run(args: argparse.Namespace) -> int:
    """Images are fetched (unprivileged) and resolved to store keys here; then this process
    becomes the root program, which prepares, measures and runs the pod."""
    require_root()
    options: GlobalOptions = args.options
    warn_insecure("run", options.insecure, Insecure.ALL)
    request = build_request(args, options)
    uuid_file = str(args.uuid_file_save.absolute()) if args.uuid_file_save else None
    exec_root(options, "run", Run(kind="run", pod=request, uuid_file=uuid_file))

"""``rkt config``: the configuration in force (auth.d, paths.d, stage1.d of the system, local
and user directories), merged as rkt merges it, printed as JSON in rkt's shape:
``{"stage0": [one entry per auth domain, per docker registry, paths, stage1]}``; trustd's
own ``fetch.d`` (download settings, trustd/shared/fetch_settings.py) adds a ``fetch`` entry
when a file sets something.

It is read with the caller's rights: a file the caller may not read is named in an error
(auth.d may hold root-only secrets), never skipped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from trustd.cli._common import read_input
from trustd.shared import fetch_settings
from trustd.shared.config import GlobalOptions
from trustd.shared.errors import UserError

KINDS = {"auth.d": ("auth", "dockerAuth"), "paths.d": ("paths",), "stage1.d": ("stage1",)}
_PATHS = ("data", "stage1-images")
_STAGE1 = ("name", "version", "location")


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "config",
        parents=parents,
        help="print configuration for each stage in JSON format",
        description='The output is JSON with "stage0" as key and rkt configuration entries '
        "as values, resembling rkt's configuration files.",
    )
    p.add_argument(
        "--pretty-print",
        action="store_true",
        default=True,
        help="apply indent to format the output (default true; --pretty-print=false: one line)",
    )
    p.set_defaults(func=run)


def _files(directory: Path, subdir: str) -> list[Path]:
    where = directory / subdir
    try:
        return sorted(p for p in where.iterdir() if p.name.endswith(".json") and p.is_file())
    except (FileNotFoundError, NotADirectoryError):
        return []
    except PermissionError as exc:
        raise UserError(f"cannot read {where}: permission denied", hint="run it as root") from exc


def _doc(path: Path, subdir: str) -> dict[str, Any]:
    try:
        doc = json.loads(read_input(path, "configuration file", 1 << 20))
    except ValueError as exc:
        raise UserError(f"configuration file {path} is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or "rktKind" not in doc:
        raise UserError(f'no rktKind specified in "{path}"')
    kind = doc["rktKind"]
    if kind not in KINDS[subdir]:
        expected = " ".join(f'"{k}"' for k in KINDS[subdir])
        raise UserError(
            f'the configuration directory "{subdir}" expects to have configuration files of '
            f'kinds [{expected}], but "{path.name}" has kind of "{kind}"'
        )
    if doc.get("rktVersion") != "v1":
        raise UserError(f'configuration file "{path}": rktVersion must be "v1"')
    return doc


def merged(dirs: list[Path]) -> list[dict[str, Any]]:
    """rkt's merge: later directories override earlier ones per auth domain, per docker
    registry and per paths/stage1 field."""
    domains: dict[str, dict[str, Any]] = {}
    registries: dict[str, dict[str, Any]] = {}
    paths: dict[str, str] = {}
    stage1: dict[str, str] = {}
    for directory in dirs:
        for subdir in KINDS:
            for path in _files(directory, subdir):
                doc = _doc(path, subdir)
                kind = doc["rktKind"]
                if kind == "auth":
                    for d in doc.get("domains") or []:
                        domains[str(d)] = {"type": doc.get("type"), **_creds(doc)}
                elif kind == "dockerAuth":
                    for r in doc.get("registries") or []:
                        registries[str(r)] = _creds(doc)
                elif kind == "paths":
                    paths.update({k: str(doc[k]) for k in _PATHS if doc.get(k)})
                else:
                    stage1.update({k: str(doc[k]) for k in _STAGE1 if doc.get(k)})
    base = {"rktVersion": "v1"}
    out = [{**base, "rktKind": "auth", "domains": [d], **v} for d, v in domains.items()] + [
        {**base, "rktKind": "dockerAuth", "registries": [r], **v} for r, v in registries.items()
    ]
    if paths:
        out.append({**base, "rktKind": "paths", **paths})
    if stage1:
        out.append({**base, "rktKind": "stage1", **stage1})
    fetch = fetch_settings.load(dirs).as_config()  # strict: a bad value is refused here
    if fetch is not None:
        out.append(fetch)
    return out


def _creds(doc: dict[str, Any]) -> dict[str, Any]:
    creds = doc.get("credentials")
    return {"credentials": creds if isinstance(creds, dict) else {}}


def run(args: argparse.Namespace) -> int:
    options: GlobalOptions = args.options
    d = options.dirs
    dirs = [Path(p) for p in (d.system_config, d.local_config, d.user_config) if p is not None]
    doc = {"stage0": merged(dirs)}
    print(
        json.dumps(doc, indent="\t")
        if args.pretty_print
        else json.dumps(doc, separators=(",", ":"))
    )
    return 0

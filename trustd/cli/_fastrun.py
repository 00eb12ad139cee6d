"""The lean parse of the common ``rkt [global flags] run [pod flags] IMAGE`` (issue #14).

The full parser builds ``rkt``'s whole argparse tree, one placeholder per verb and every
flag of ``run``, on each start. This module reads only the plain form of a run: global and
pod flags spelt ``--flag=VALUE`` (or a bare boolean, or a bare ``--net``), then exactly one
image, last. It yields the namespace the full parser would, every default included, or
``None`` for anything else (``--help``, a flag spelt ``--flag VALUE``, an app flag, ``--``,
two images, a value its check refuses, a deprecated flag), and then the full parser runs and
says what it says. ``tests/unit/cli/test_fastrun.py`` checks, for generated argument
vectors, that a lean answer is exactly the full parser's.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trustd.cli._grammar import FALSE_WORDS, TRUE_WORDS
from trustd.shared.config import directory_flag
from trustd.shared.insecure import Insecure, parse_insecure_options

# The global flags (``add_global_flags``): valued ones with their type, and the booleans.
_GLOBAL_VALUES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "--dir": ("dir", directory_flag),
    "--system-config": ("system_config", directory_flag),
    "--local-config": ("local_config", directory_flag),
    "--user-config": ("user_config", directory_flag),
    "--insecure-options": ("insecure_options", parse_insecure_options),
}
_GLOBAL_BOOLS = {"--debug": "debug", "--trust-keys-from-https": "trust_keys_from_https"}


def _choice(*allowed: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(value)
        return value

    return check


def _text(value: str) -> str:
    return value


# The pod flags read here (``add_pod_flags(running=True)``, ``add_net_flags``); any other
# sends the run to the full parser.
_RUN_VALUES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "--net": ("net", _text),
    "--stage1-name": ("stage1_name", _text),
    "--pull-policy": ("pull_policy", _choice("never", "new", "update")),
    "--hostname": ("hostname", _text),
    "--uuid-file-save": ("uuid_file_save", Path),
    "--ipc": ("ipc", _choice("auto", "private", "parent")),
}
_RUN_BOOLS = {
    "--no-overlay": "no_overlay",
    "--private-users": "private_users",
    "--inherit-env": "inherit_env",
    "--interactive": "interactive",
    "--mds-register": "mds_register",
}
_NO_OPT = {"--net": "default"}  # pflag's NoOptDefVal: ``--net`` alone is ``--net=default``


def _defaults() -> dict[str, Any]:
    """Every attribute the full parser sets for ``rkt run IMAGE``, as it sets it."""
    return {
        "command": "run",
        "debug": False,
        "dir": None,
        "system_config": None,
        "local_config": None,
        "user_config": None,
        "insecure_options": Insecure.NONE,
        "trust_keys_from_https": False,
        "pull_policy": "new",
        "volume": [],
        "pod_mounts": [],
        "stage1_name": "container",
        "stage1_path": None,
        "private_users": False,
        "inherit_env": False,
        "set_env": [],
        "set_env_file": [],
        "pod_manifest": None,
        "no_overlay": False,
        "store_only": False,
        "no_store": False,
        "net": None,
        "dns": [],
        "dns_search": [],
        "dns_opt": [],
        "dns_domain": None,
        "hosts_entry": [],
        "port": [],
        "hostname": None,
        "interactive": False,
        "uuid_file_save": None,
        "mds_register": False,
        "ipc": "auto",
    }


def _flag(word: str, values: dict[str, Any], bools: dict[str, str], into: dict[str, Any]) -> bool:
    """Read one flag word into ``into``; False when it is not one this parse reads."""
    name, eq, value = word.partition("=")
    if name in bools:
        if not eq:
            into[bools[name]] = True
        elif value in TRUE_WORDS or value in FALSE_WORDS:
            into[bools[name]] = value in TRUE_WORDS
        else:
            return False  # the full parser names the bad word
        return True
    if name not in values:
        return False
    if not eq:
        if name not in _NO_OPT:
            return False  # ``--flag VALUE``: the full parser reads it
        value = _NO_OPT[name]
    dest, convert = values[name]
    try:
        into[dest] = convert(value)
    except Exception:  # noqa: BLE001 - any refusal is the full parser's to word
        return False
    return True


def parse(words: Sequence[str]) -> argparse.Namespace | None:
    """The namespace of ``rkt WORDS`` (``sys.argv[1:]``) for a plain run, else None."""
    found = _defaults()
    at = 0
    while at < len(words) and words[at].startswith("--"):
        if not _flag(words[at], _GLOBAL_VALUES, _GLOBAL_BOOLS, found):
            return None
        at += 1
    if at >= len(words) or words[at] != "run":
        return None
    pod_values, pod_bools = _GLOBAL_VALUES | _RUN_VALUES, _GLOBAL_BOOLS | _RUN_BOOLS
    for word in words[at + 1 : -1]:
        if not word.startswith("--") or not _flag(word, pod_values, pod_bools, found):
            return None
    image = words[-1] if len(words) > at + 1 else ""
    if not image or image.startswith("-"):
        return None
    from trustd.cli.run import run  # noqa: PLC0415 - the handler the full parser sets

    return argparse.Namespace(**found, images=[image], func=run)

"""``--insecure-options``: the one typed opt-out (CONVENTIONS 5), with rkt's names and bits.

Every use is visible: :func:`warn_insecure` prints what was switched off, and later issues
record the set in each pod's audit record.
"""

from __future__ import annotations

import enum
import sys
from typing import Literal, get_args

from trustd.shared.errors import UserError

# The single-bit option names: what records, policy (run.insecure_options) and messages use.
InsecureName = Literal[
    "image", "tls", "ondisk", "http", "pubkey", "capabilities", "paths", "seccomp"
]
INSECURE_NAMES: tuple[InsecureName, ...] = get_args(InsecureName)


class Insecure(enum.Flag):
    NONE = 0
    IMAGE = 1
    TLS = 2
    ONDISK = 4  # accepted for rkt compatibility; has no effect (rkt PR #3623)
    HTTP = 8
    PUBKEY = 16
    CAPABILITIES = 32
    PATHS = 64
    SECCOMP = 128
    ALL_FETCH = IMAGE | TLS | HTTP | PUBKEY
    ALL_RUN = CAPABILITIES | PATHS | SECCOMP
    ALL = ALL_FETCH | ALL_RUN


_NAMES: dict[str, Insecure] = {
    "none": Insecure.NONE,
    "image": Insecure.IMAGE,
    "tls": Insecure.TLS,
    "ondisk": Insecure.ONDISK,
    "http": Insecure.HTTP,
    "pubkey": Insecure.PUBKEY,
    "capabilities": Insecure.CAPABILITIES,
    "paths": Insecure.PATHS,
    "seccomp": Insecure.SECCOMP,
    "all-fetch": Insecure.ALL_FETCH,
    "all-run": Insecure.ALL_RUN,
    "all": Insecure.ALL,
}

_WHAT_IT_DISABLES: dict[Insecure, str] = {
    Insecure.IMAGE: "image signature verification is disabled",
    Insecure.TLS: "TLS certificate verification is disabled",
    Insecure.HTTP: "plain HTTP is allowed for discovery and downloads",
    Insecure.PUBKEY: "keys may be fetched over insecure transport",
    Insecure.CAPABILITIES: "capability restriction is disabled",
    Insecure.PATHS: "masked and read-only paths are disabled",
    Insecure.SECCOMP: "seccomp filtering is disabled",
}


def parse_insecure_options(text: str) -> Insecure:
    """Parse rkt's comma list (``image,tls``); unknown or repeated names are an error."""
    result = Insecure.NONE
    seen: set[str] = set()
    for raw in text.split(","):
        name = raw.strip()
        if name not in _NAMES:
            choices = ", ".join(_NAMES)
            raise UserError(f"unknown option {name!r}", hint=f"--insecure-options takes: {choices}")
        if name in seen:
            raise UserError(f"duplicated option {name!r} in --insecure-options")
        seen.add(name)
        result |= _NAMES[name]
    return result


def insecure_names(value: Insecure) -> list[InsecureName]:
    """The single-bit names set in ``value``, for records and messages."""
    return [n for n in INSECURE_NAMES if _NAMES[n] in value]


def warn_insecure(command: str, value: Insecure, relevant: Insecure) -> None:
    """Print one warning line per insecure bit that affects this command."""
    for bit, text in _WHAT_IT_DISABLES.items():
        if bit in value and bit in relevant:
            print(f"{command}: warning: --insecure-options: {text}", file=sys.stderr)

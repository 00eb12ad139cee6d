"""rkt's and Docker's syscall sets (package data ``seccomp_sets.json``) and wildcard expansion.

The lists are rkt's (``stage1/init/common/seccomp_wildcards.go``, Apache-2.0); the JSON file
names its origin in ``_attribution``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from trustd.shared.errors import LocalStateError, UserError
from trustd.shared.isolation import _syscalls

ALL = "@appc.io/all"
EMPTY = "@appc.io/empty"
RKT_DEFAULT_WHITELIST = "@rkt/default-whitelist"

_DATA = "seccomp_sets.json"


@functools.cache
def _wildcards() -> dict[str, frozenset[str]]:
    """Each wildcard name mapped to its syscall names (all architectures)."""
    try:
        # Beside this module (trustd ships as files: shipped.py reads its data the same
        # way); importlib.resources loaded zipfile and ~10 more modules (issue #14).
        text = Path(__file__).with_name(_DATA).read_text(encoding="utf-8")
        doc = json.loads(text)
        sets = {k: frozenset(_strings(v)) for k, v in doc["sets"].items()}
        return {
            w: frozenset().union(*(sets[s] for s in parts)) for w, parts in doc["wildcards"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LocalStateError(
            f"trustd's seccomp set data {_DATA} is missing or corrupt: {exc}",
            hint="reinstall trustd",
        ) from exc


def _strings(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("a set must be a list of strings")
    return value


def known_wildcards() -> tuple[str, ...]:
    """Every ``@…`` name the parsers accept, sorted."""
    return tuple(sorted({*_wildcards(), ALL, EMPTY}))


def expand(items: list[str]) -> frozenset[str]:
    """Expand wildcards and check names; return the syscalls that exist on this architecture.

    Names libseccomp knows but that do not exist on this architecture (``chown32``, ``stime``,
    the ARM-only extras of ``@rkt/default-whitelist`` on x86_64) are skipped, as systemd did
    for rkt. Unknown ``@…`` wildcards and syscall names nobody has heard of are a UserError
    naming every one of them. ``@appc.io/all`` and ``@appc.io/empty`` are handled by the caller.
    """
    table = _wildcards()
    names: set[str] = set()
    bad_wildcards: list[str] = []
    for item in items:
        if item.startswith("@"):
            if item in table:
                names |= table[item]
            else:
                bad_wildcards.append(item)
        else:
            names.add(item)
    if bad_wildcards:
        raise UserError(
            f"unknown seccomp wildcard(s): {', '.join(map(repr, bad_wildcards))}",
            hint=f"known wildcards: {', '.join(known_wildcards())}",
        )
    unknown = sorted(n for n in names if _syscalls.classify(n) is _syscalls.Known.UNKNOWN)
    if unknown:
        raise UserError(
            f"unknown syscall name(s): {', '.join(map(repr, unknown))}",
            hint="use syscall names as in syscalls(2), e.g. chmod, newfstatat, unshare",
        )
    return _syscalls.native(names)

"""Path rules for ACI entries (private): canonical names and in-rootfs link resolution.

Names are judged as strings, before anything could be written: an absolute name, a ``..``
segment, an empty or ``.`` segment inside the name (``rootfs//x``, ``rootfs/./x``) and names
longer than PATH_MAX are refused; a leading ``./`` and trailing slashes are dropped so that
``./rootfs/a/`` and ``rootfs/a`` are the same entry.

Symlink targets are resolved the way the kernel would inside the container, following every
symlink the archive itself declares. An absolute target starts at the rootfs root, as the
container sees it, and from then on ``..`` at the root stays at the root, as in the kernel
(and as root's own ``RESOLVE_IN_ROOT`` lookups in the rootfs resolve it): ``/../dir2`` is
``/dir2``, which rkt's test image ``rkt-inspect`` relies on. One case is refused where the
kernel would clamp: a relative walk whose ``..`` climbs above the rootfs root, e.g.
``rootfs/a/l -> ../../etc``. Followed from the host (an extracted or rendered tree), that
link leaves the tree, so it is an escape; an absolute link means the host's ``/`` there,
with or without ``..`` (docs/compat.md, "Images").
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Final

PATH_MAX: Final = 4096
MAX_SYMLINK_HOPS: Final = 40  # Linux's MAXSYMLINKS


class Refused(Exception):
    """One archive rule broken; ``rule`` is a stable id, ``reason`` says what was seen."""

    def __init__(self, rule: str, reason: str, entry: str | None = None) -> None:
        super().__init__(f"{rule}: {reason}")
        self.rule = rule
        self.reason = reason
        self.entry = entry


def _check_text(value: str, what: str) -> None:
    if "\x00" in value:
        raise Refused("nul-in-name", f"the {what} contains a NUL byte")
    if len(value.encode("utf-8", "surrogateescape")) > PATH_MAX:
        raise Refused("name-too-long", f"the {what} is longer than {PATH_MAX} bytes")


def canonical_name(name: str) -> str:
    """The canonical form of an archive member name; ``""`` is the archive's own root."""
    if not name:
        raise Refused("empty-name", "the entry has an empty name")
    _check_text(name, "name")
    if name.startswith("/"):
        raise Refused("absolute-path", "the name is an absolute path")
    parts = name.split("/")
    while parts and parts[0] == ".":
        parts.pop(0)
    while parts and parts[-1] == "":
        parts.pop()
    if ".." in parts:
        raise Refused("dotdot", "the name has a '..' segment")
    if "" in parts or "." in parts:
        raise Refused("non-canonical-path", "the name has an empty or '.' segment inside it")
    return "/".join(parts)


def check_symlink_target(target: str) -> None:
    if not target:
        raise Refused("empty-symlink", "the symlink has an empty target")
    _check_text(target, "symlink target")


def _components(path: str) -> list[str]:
    return [c for c in path.split("/") if c not in ("", ".")]


def resolve_symlink(link: str, symlinks: Mapping[str, str]) -> str:
    """Where the symlink at rootfs-relative path ``link`` ends, rootfs-relative.

    ``symlinks`` maps every symlink in the rootfs (rootfs-relative path) to its target. Raises
    :class:`Refused` when a relative walk climbs above the rootfs root or the walk takes more
    than 40 symlinks.
    """
    target = symlinks[link]
    absolute = target.startswith("/")  # ".." at the root stays there once the walk is
    stack = [] if absolute else link.split("/")[:-1]
    pending = deque(_components(target))
    hops = 0
    while pending:
        comp = pending.popleft()
        if comp == "..":
            if stack:
                stack.pop()
            elif not absolute:
                raise Refused(
                    "symlink-escape", f"the target {target!r} resolves outside rootfs/", link
                )
            continue
        stack.append(comp)
        hop = symlinks.get("/".join(stack))
        if hop is None:
            continue
        hops += 1
        if hops > MAX_SYMLINK_HOPS:
            raise Refused("symlink-loop", f"resolving {target!r} takes more than 40 symlinks", link)
        stack.pop()
        if hop.startswith("/"):
            stack = []
            absolute = True
        pending.extendleft(reversed(_components(hop)))
    return "/".join(stack)

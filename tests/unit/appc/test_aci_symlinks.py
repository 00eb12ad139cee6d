"""Symlinks through ``/..``: accepted as the kernel resolves them; only real escapes refused.

``..`` at the root of an absolute walk stays at the root (the kernel, and root's own
RESOLVE_IN_ROOT lookups, clamp it); rkt's test image rkt-inspect carries such a link. A
relative walk that climbs above the rootfs still is an escape: followed from the host (an
extracted tree) it leaves the tree. The resolver is checked against an independent reference
model and, where every component exists, against the kernel (openat2 RESOLVE_IN_ROOT).
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.appc._archives import d, good, inspect, sym, tar_bytes
from trustd.privileged import _dirfd
from trustd.shared.appc._aci_paths import MAX_SYMLINK_HOPS, Refused, resolve_symlink
from trustd.shared.appc.aci import AciError

# -- examples -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("links", "link", "lands"),
    [
        ({"dir1/link": "/../dir2"}, "dir1/link", "dir2"),  # rkt-inspect's link
        ({"l": "/../../etc/passwd"}, "l", "etc/passwd"),
        ({"l": "/a/../../../b"}, "l", "b"),
        ({"root": "/", "l": "root/../../x"}, "l", "x"),  # absolute hop, then ".." clamps
        ({"a/l": "../b"}, "a/l", "b"),
        ({"a/up": "..", "a/l": "up/b"}, "a/l", "b"),
    ],
)
def test_links_that_stay_inside_resolve(links: dict[str, str], link: str, lands: str) -> None:
    assert resolve_symlink(link, links) == lands


@pytest.mark.parametrize(
    ("links", "link"),
    [
        ({"up": ".."}, "up"),
        ({"a/l": "../../etc"}, "a/l"),
        ({"a/up": "..", "a/l": "up/.."}, "a/l"),  # through a relative link
    ],
)
def test_relative_walks_above_the_rootfs_are_escapes(links: dict[str, str], link: str) -> None:
    with pytest.raises(Refused) as info:
        resolve_symlink(link, links)
    assert info.value.rule == "symlink-escape"


def test_an_aci_with_rkt_inspects_dotdot_link_is_accepted() -> None:
    info = inspect(
        tar_bytes(good(d("rootfs/dir1"), d("rootfs/dir2"), sym("rootfs/dir1/l", "/../dir2")))
    )
    assert str(info.manifest.name) == "example.com/app"
    assert info.entry_count == 7


def test_an_aci_with_a_relative_escape_is_still_refused() -> None:
    with pytest.raises(AciError) as info:
        inspect(tar_bytes(good(d("rootfs/a"), sym("rootfs/a/l", "../../x"))))
    assert info.value.rule == "symlink-escape"


# -- property: the resolver against a reference model and the kernel ----------------------


class _Escape(Exception):
    pass


class _Loop(Exception):
    pass


def reference(link: str, links: dict[str, str]) -> str:
    """POSIX path resolution, written recursively and independently of the resolver: each
    symlink met is expanded in place; ".." at the root of an absolute walk stays there."""
    hops = 0

    def walk(cur: list[str], path: str, absolute: bool) -> tuple[list[str], bool]:
        nonlocal hops
        if path.startswith("/"):
            cur, absolute = [], True
        for comp in path.split("/"):
            if comp in ("", "."):
                continue
            if comp == "..":
                if not cur and not absolute:
                    raise _Escape
                cur = cur[:-1]
                continue
            key = "/".join([*cur, comp])
            if key in links:
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise _Loop
                cur, absolute = walk(cur, links[key], absolute)
            else:
                cur = [*cur, comp]
        return cur, absolute

    return "/".join(walk(link.split("/")[:-1], links[link], False)[0])


NAME = st.sampled_from(["a", "b", "c"])
PATH = st.lists(NAME, min_size=1, max_size=2).map("/".join)
TARGET = st.lists(st.sampled_from(["a", "b", "c", "..", "."]), min_size=0, max_size=4).flatmap(
    lambda parts: st.sampled_from(["/", ""]).map(lambda lead: lead + "/".join(parts) or ".")
)


def _consistent(links: dict[str, str]) -> dict[str, str]:
    """Drop links below other links (an archive cannot hold them: write-through)."""
    return {
        p: t for p, t in links.items() if not any(p.startswith(q + "/") for q in links if q != p)
    }


def _kernel(links: dict[str, str], link: str) -> str | None:
    """Where the kernel lands, resolving ``link`` with the tree as ``/``, or None if some
    component is missing (the resolver does not need the tree to exist)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for first in "abc":
            if first not in links:
                for second in "abc":
                    if f"{first}/{second}" not in links:
                        (root / first / second).mkdir(parents=True, exist_ok=True)
                (root / first).mkdir(exist_ok=True)
        for path, target in links.items():
            (root / path).symlink_to(target)
        rootfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fd = _dirfd.openat2(rootfd, link, _dirfd.O_PATH, 0, _dirfd.IN_ROOT)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                return None
            raise
        finally:
            os.close(rootfd)
        try:
            real = Path(f"/proc/self/fd/{fd}").readlink()
        finally:
            os.close(fd)
        rel = os.path.relpath(real, root.resolve())
        return "" if rel == "." else rel


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(PATH, TARGET, min_size=1, max_size=5), st.data())
def test_resolver_matches_the_reference_model_and_the_kernel(
    raw: dict[str, str], data: st.DataObject
) -> None:
    links = _consistent(raw)
    link = data.draw(st.sampled_from(sorted(links)))
    try:
        expected: str | type[Exception] = reference(link, links)
    except (_Escape, _Loop) as exc:
        expected = type(exc)
    try:
        got: str | type[Exception] = resolve_symlink(link, links)
    except Refused as exc:
        got = {"symlink-escape": _Escape, "symlink-loop": _Loop}[exc.rule]
    assert got == expected
    if isinstance(got, str):
        kernel = _kernel(links, link)
        if kernel is not None:
            assert kernel == got

"""ACI inspection, property tests: what is accepted stays in rootfs; damage raises AciError."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.appc._archives import (
    COMPRESS,
    MANIFEST,
    E,
    d,
    good,
    hard,
    inspect,
    sym,
    tar_bytes,
)
from trustd.shared.appc.aci import AciError, Compression

# -- property: whatever is accepted stays inside rootfs ---------------------------------------

SEGMENT = st.sampled_from(["a", "b", "c", "..", ".", ""])
REL_PATH = st.lists(SEGMENT, min_size=1, max_size=4).map("/".join)
LINK_TARGET = st.one_of(REL_PATH, REL_PATH.map(lambda p: "/" + p))
ENTRY = st.one_of(
    st.tuples(st.just("dir"), REL_PATH, st.just("")),
    st.tuples(st.just("file"), REL_PATH, st.just("")),
    st.tuples(st.just("symlink"), REL_PATH, LINK_TARGET),
    st.tuples(st.just("hardlink"), REL_PATH, REL_PATH.map(lambda p: "rootfs/" + p)),
)


def _inside(path: str, root: str) -> bool:
    real = os.path.realpath(path)
    return os.path.commonpath([real, root]) == root


def _clamped(absolute: str) -> list[str]:
    """An absolute target's components with ``..`` at the root staying at the root."""
    parts: list[str] = []
    for comp in absolute.split("/"):
        if comp == "..":
            parts = parts[:-1]
        elif comp not in ("", "."):
            parts.append(comp)
    return parts


def _materialise(entries: list[tuple[str, str, str]], top: Path) -> None:
    """Independent oracle: build the accepted tree on disk and let the kernel resolve it.

    Absolute symlink targets are rewritten relative to the rootfs, as a container sees them
    (``..`` at the root stays at the root).
    Before each write the parent is checked to resolve inside rootfs, so a wrong acceptance
    fails the test instead of writing outside the temporary directory.
    """
    root = top / "rootfs"
    root.mkdir()
    real_root = os.path.realpath(root)
    for kind, name, target in entries:
        parts = [p for p in name.split("/") if p not in ("", ".")]
        assert ".." not in parts, name
        path = top.joinpath("rootfs", *parts)
        assert _inside(str(path.parent), real_root), f"{name} is written outside rootfs"
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "dir":
            path.mkdir(exist_ok=True)
        elif kind == "file":
            path.write_bytes(b"x")
        elif kind == "symlink":
            inside = root.joinpath(*_clamped(target))
            path.symlink_to(os.path.relpath(inside, path.parent) if target[:1] == "/" else target)
        else:
            source = top / target
            assert _inside(str(source), real_root), f"hard link {name} -> {target} leaves rootfs"
            os.link(source, path, follow_symlinks=False)
    for kind, name, _ in entries:
        path = top.joinpath("rootfs", *[p for p in name.split("/") if p not in ("", ".")])
        assert _inside(str(path), real_root), f"{kind} {name} resolves outside rootfs"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ENTRY, max_size=6))
def test_accepted_archives_never_resolve_outside_rootfs(
    entries: list[tuple[str, str, str]],
) -> None:
    members = []
    for kind, name, target in entries:
        full = "rootfs/" + name
        if kind == "dir":
            members.append(d(full))
        elif kind == "file":
            members.append(E(full, data=b"x"))
        elif kind == "symlink":
            members.append(sym(full, target))
        else:
            members.append(hard(full, target))
    try:
        inspect(tar_bytes([E("manifest", data=MANIFEST), d("rootfs"), *members]))
    except AciError:
        return
    with tempfile.TemporaryDirectory() as tmp:
        _materialise([(k, n, t) for k, n, t in entries], Path(tmp))


GOOD_PLAIN = tar_bytes(good(sym("rootfs/bin/sh", "app"), E("rootfs/etc/x", data=b"y" * 700)))


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([Compression.NONE, Compression.GZIP, Compression.XZ]),
    st.lists(st.tuples(st.integers(0, 20000), st.integers(0, 255)), max_size=4),
    st.integers(0, 20000),
)
def test_damaged_archives_only_ever_raise_aci_error(
    compression: Compression, flips: list[tuple[int, int]], keep: int
) -> None:
    data = bytearray(COMPRESS[compression](GOOD_PLAIN))
    for offset, value in flips:
        data[offset % len(data)] = value
    try:
        info = inspect(bytes(data[: max(keep, 1)]))
    except AciError:
        return
    plain: dict[Compression, Callable[[bytes], bytes]] = {
        Compression.NONE: bytes,
        Compression.GZIP: gzip.decompress,
        Compression.XZ: lzma.decompress,
    }
    decompress = plain[info.compression]
    tar = decompress(bytes(data[: max(keep, 1)]))
    assert info.image_id == "sha512-" + hashlib.sha512(tar).hexdigest()

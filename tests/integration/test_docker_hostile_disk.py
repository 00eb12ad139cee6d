"""A full disk says so, for every verb that writes the store (issue #12: while a hostile
layer had filled the disk, every verb said "check the permissions").

The misleading hints came from three places: sqlite's "unable to open database file" (it
cannot create its journal when no inode is left) mapped to "not writable for you";
``domain_error`` mapping any OSError with a file name to "check the path and its
permissions"; and root's ``_dirfd`` refusal saying "check the data directory (--dir) and
its permissions". A real tmpfs, full of blocks or of inodes, and real ``rkt`` verbs.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._policy import install_policy
from tests.integration._hostile import Hostile, fill, hostile_registry
from tests.integration.conftest import require_root

RKT = str(Path(sys.executable).with_name("rkt"))


@contextlib.contextmanager
def _base(options: str) -> Iterator[tuple[Path, Path]]:
    base = Path(tempfile.mkdtemp(prefix="trustd-full-", dir="/tmp"))
    base.chmod(0o755)
    install_policy(base / "sys")
    (base / "etc").mkdir()
    disk = base / "disk"
    disk.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"{options},mode=0755", "tmpfs", str(disk)], check=True
    )
    try:
        yield base, disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
        subprocess.run(["rm", "-rf", str(base)], check=False)


def _rkt(base: Path, disk: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = [f"--system-config={base / 'sys'}", f"--local-config={base / 'etc'}"]
    flags += [f"--dir={disk / 'data'}", "--insecure-options=image,http"]
    return subprocess.run(
        [RKT, *flags, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def _fill_inodes(disk: Path) -> list[Path]:
    made: list[Path] = []
    with contextlib.suppress(OSError):
        while True:
            path = disk / f"inode-{len(made)}"
            path.touch()
            made.append(path)
    return made


@pytest.fixture
def registry() -> Iterator[Hostile]:
    with hostile_registry() as reg:
        reg.push("full/a", "latest", [{"bin/sh": b"#!/bin/true\n"}])
        reg.push("full/b", "latest", [{"bin/sh": b"#!/bin/sh\n", "etc/motd": b"hi\n"}])
        yield reg


@pytest.mark.parametrize(
    ("options", "how"), [("size=24m", "blocks"), ("size=64m,nr_inodes=400", "inodes")]
)
def test_every_verb_on_a_full_disk_says_it_is_full(
    registry: Hostile, options: str, how: str
) -> None:
    require_root()
    with _base(options) as (base, disk):
        first = _rkt(base, disk, "fetch", f"docker://{registry.host}/full/a")
        assert first.returncode == 0, first.stderr
        image = first.stdout.strip()
        fillers = [fill(disk)] if how == "blocks" else _fill_inodes(disk)
        verbs = [
            ("fetch", f"docker://{registry.host}/full/b"),
            ("image", "list"),
            ("image", "rm", image),
            ("image", "gc"),
            ("prepare", image),
        ]
        for verb in verbs:
            refused = _rkt(base, disk, *verb)
            assert refused.returncode == 254, (verb, refused.stderr)
            assert "full" in refused.stderr, (verb, refused.stderr)
            assert "permission" not in refused.stderr and "not writable" not in refused.stderr
            assert "internal error" not in refused.stderr, (verb, refused.stderr)
        for path in fillers:
            path.unlink()
        again = _rkt(base, disk, "fetch", f"docker://{registry.host}/full/b")
        assert again.returncode == 0, again.stderr

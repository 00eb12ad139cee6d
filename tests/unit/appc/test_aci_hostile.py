"""ACI inspection: each hostile archive is refused by its rule.

Hostile builders are named after what they catch (CONVENTIONS 12) so a fixed hole stays fixed.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import tarfile
from collections.abc import Callable

import pytest

from tests.unit.appc._archives import (
    COMPRESS,
    LIMITS,
    MANIFEST,
    E,
    d,
    good,
    hard,
    inspect,
    sym,
    tar_bytes,
)
from trustd.shared.appc.aci import AciError, AciLimits, Compression
from trustd.shared.errors import RemoteLiedError

# -- refused --------------------------------------------------------------------------------


def gnu_sparse() -> bytes:
    """A GNU sparse entry (type S) with a well-formed sparse map of one 1-byte chunk."""
    ti = E("rootfs/sparse", data=b"x").info()
    ti.type = tarfile.GNUTYPE_SPARSE
    block = bytearray(ti.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))
    block[386:410] = b"%011o\0%011o\0" % (0, 1)  # one (offset, size) pair
    block[482] = 0  # no extension blocks
    block[483:495] = b"%011o\0" % 1  # real size
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    head = tar_bytes(good(), fmt=tarfile.GNU_FORMAT).rstrip(b"\0")
    head = head.ljust(-(-len(head) // 512) * 512, b"\0")
    return head + bytes(block) + b"x".ljust(512, b"\0") + b"\0" * 1024


def cut(data: bytes, keep: int) -> bytes:
    return data[:keep]


HOSTILE: dict[str, tuple[Callable[[], bytes], str, AciLimits]] = {
    "tar-symlink-escape": (
        lambda: tar_bytes(good(d("rootfs/a"), sym("rootfs/a/l", "../../../etc"))),
        "symlink-escape",
        LIMITS,
    ),
    "tar-symlink-escape-from-root": (
        lambda: tar_bytes(good(sym("rootfs/up", ".."))),
        "symlink-escape",
        LIMITS,
    ),
    "tar-symlink-escape-through-chain": (
        lambda: tar_bytes(
            good(d("rootfs/a"), sym("rootfs/a/up", ".."), sym("rootfs/a/up2", "up/.."))
        ),
        "symlink-escape",
        LIMITS,
    ),
    "tar-symlink-loop": (
        lambda: tar_bytes(good(sym("rootfs/a", "b"), sym("rootfs/b", "a"))),
        "symlink-loop",
        LIMITS,
    ),
    "tar-symlink-empty-target": (
        lambda: tar_bytes(good(sym("rootfs/l", ""))),
        "empty-symlink",
        LIMITS,
    ),
    "tar-write-through-symlink": (
        lambda: tar_bytes(good(sym("rootfs/lnk", "/"), E("rootfs/lnk/etc/passwd", data=b"x"))),
        "write-through-symlink",
        LIMITS,
    ),
    "tar-write-through-symlink-declared-later": (
        lambda: tar_bytes(good(E("rootfs/lnk/x", data=b"x"), sym("rootfs/lnk", "/"))),
        "write-through-symlink",
        LIMITS,
    ),
    "tar-write-below-file": (
        lambda: tar_bytes(good(E("rootfs/f", data=b"x"), E("rootfs/f/g", data=b"y"))),
        "write-through-non-directory",
        LIMITS,
    ),
    "tar-hardlink-escape": (
        lambda: tar_bytes(good(hard("rootfs/m", "manifest"))),
        "hardlink-escape",
        LIMITS,
    ),
    "tar-hardlink-dotdot": (
        lambda: tar_bytes(good(hard("rootfs/m", "rootfs/../x"))),
        "dotdot",
        LIMITS,
    ),
    "tar-hardlink-absolute": (
        lambda: tar_bytes(good(hard("rootfs/m", "/etc/shadow"))),
        "absolute-path",
        LIMITS,
    ),
    "tar-hardlink-forward": (
        lambda: tar_bytes(good(hard("rootfs/m", "rootfs/later"), E("rootfs/later", data=b"x"))),
        "hardlink-escape",
        LIMITS,
    ),
    "tar-hardlink-to-symlink": (
        lambda: tar_bytes(good(sym("rootfs/s", "/etc/shadow"), hard("rootfs/m", "rootfs/s"))),
        "hardlink-escape",
        LIMITS,
    ),
    "tar-dotdot": (
        lambda: tar_bytes(good(E("rootfs/../../etc/cron.d/x", data=b"x"))),
        "dotdot",
        LIMITS,
    ),
    "tar-absolute-path": (
        lambda: tar_bytes(good(E("/etc/cron.d/x", data=b"x"))),
        "absolute-path",
        LIMITS,
    ),
    "tar-non-canonical-path": (
        lambda: tar_bytes(good(E("rootfs/./bin/app", data=b"y"))),
        "non-canonical-path",
        LIMITS,
    ),
    "tar-empty-name": (lambda: tar_bytes(good(E("", data=b"x"))), "empty-name", LIMITS),
    "tar-duplicate-entry": (
        lambda: tar_bytes(good(E("rootfs/bin/app", data=b"y"))),
        "duplicate-entry",
        LIMITS,
    ),
    "tar-duplicate-entry-dot-slash": (
        lambda: tar_bytes(good(E("./rootfs/bin/app", data=b"y"))),
        "duplicate-entry",
        LIMITS,
    ),
    "tar-duplicate-manifest": (
        lambda: tar_bytes(good(E("manifest", data=MANIFEST))),
        "duplicate-entry",
        LIMITS,
    ),
    "tar-device-node": (
        lambda: tar_bytes(good(E("rootfs/dev/sda", tarfile.BLKTYPE))),
        "device-node",
        LIMITS,
    ),
    "tar-fifo": (
        lambda: tar_bytes(good(E("rootfs/fifo", tarfile.FIFOTYPE))),
        "device-node",
        LIMITS,
    ),
    "tar-extra-top-level": (
        lambda: tar_bytes(good(E("etc/passwd", data=b"x"))),
        "extra-top-level",
        LIMITS,
    ),
    "tar-below-manifest": (
        lambda: tar_bytes(good(E("manifest/x", data=b"x"))),
        "extra-top-level",
        LIMITS,
    ),
    "tar-missing-manifest": (lambda: tar_bytes(good()[1:]), "missing-manifest", LIMITS),
    "tar-missing-rootfs": (
        lambda: tar_bytes([E("manifest", data=MANIFEST)]),
        "missing-rootfs",
        LIMITS,
    ),
    "tar-manifest-symlink": (
        lambda: tar_bytes([sym("manifest", "/etc/passwd"), d("rootfs")]),
        "manifest-not-regular",
        LIMITS,
    ),
    "tar-rootfs-not-directory": (
        lambda: tar_bytes([E("manifest", data=MANIFEST), sym("rootfs", "/")]),
        "rootfs-not-directory",
        LIMITS,
    ),
    "tar-unsupported-type": (
        lambda: tar_bytes(good(E("rootfs/v", b"V"))),
        "unsupported-entry-type",
        LIMITS,
    ),
    "tar-gnu-sparse": (gnu_sparse, "sparse-file", LIMITS),
    "tar-pax-sparse": (
        lambda: tar_bytes(
            good(E("rootfs/s", data=b"x", pax={"GNU.sparse.map": "0,1", "GNU.sparse.size": "1"}))
        ),
        "sparse-file",
        LIMITS,
    ),
    "tar-size-cap": (
        lambda: tar_bytes(good(E("rootfs/big", data=b"x" * 20000))),
        "size-cap",
        AciLimits(max_uncompressed_size=16384),
    ),
    "tar-entry-count-cap": (
        lambda: tar_bytes(good(d("rootfs/x"))),
        "entry-count-cap",
        AciLimits(max_entries=4),
    ),
    "tar-file-size-cap": (
        lambda: tar_bytes(good(E("rootfs/big", data=b"x" * 100))),
        "file-size-cap",
        AciLimits(max_file_size=99),
    ),
    "tar-pax-header-cap": (
        lambda: tar_bytes(good(E("rootfs/x", pax={"SCHILY.xattr.user.big": "v" * 5000}))),
        "header-too-large",
        AciLimits(max_header_size=4096),
    ),
    "manifest-too-large": (
        lambda: tar_bytes(good()),
        "manifest-too-large",
        AciLimits(max_manifest_size=len(MANIFEST) - 1),
    ),
    "manifest-invalid": (
        lambda: tar_bytes([E("manifest", data=MANIFEST.replace(b"linux", b"plan9")), d("rootfs")]),
        "bad-manifest",
        LIMITS,
    ),
    "not-an-archive": (lambda: b"this is not an archive\n" * 40, "not-an-archive", LIMITS),
    "not-an-archive-zstd": (lambda: b"\x28\xb5\x2f\xfd" + b"\0" * 600, "not-an-archive", LIMITS),
    "not-an-archive-short": (lambda: b"\x1f", "not-an-archive", LIMITS),
    "truncated-gzip": (
        lambda: cut(gzip.compress(tar_bytes(good())), 60),
        "corrupt-archive",
        LIMITS,
    ),
    "truncated-xz": (lambda: cut(lzma.compress(tar_bytes(good())), 100), "corrupt-archive", LIMITS),
    "corrupt-bzip2": (
        lambda: bz2.compress(tar_bytes(good()))[:40] + b"garbage" * 20,
        "corrupt-archive",
        LIMITS,
    ),
    "truncated-tar-at-header": (lambda: cut(tar_bytes(good()), 512 * 4), "truncated-tar", LIMITS),
    "truncated-tar-in-data": (
        lambda: cut(tar_bytes(good(E("rootfs/big", data=b"x" * 4000))), 512 * 7 + 100),
        "corrupt-archive",
        LIMITS,
    ),
    "tar-trailing-data": (lambda: tar_bytes(good()) + b"hidden", "trailing-data", LIMITS),
}


def hidden_after_zero_block() -> bytes:
    """One zero block, then an entry tarfile would never show (GNU tar -i would extract it)."""
    first = tar_bytes(good())
    body = first[: first.rindex(b"x" + b"\0" * 511) + 512]  # up to rootfs/bin/app's data
    extra = tar_bytes([E("rootfs/evil", data=b"x")])
    return body + b"\0" * 512 + extra


HOSTILE["tar-hidden-after-zero-block"] = (hidden_after_zero_block, "trailing-data", LIMITS)


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("compression", [Compression.NONE, Compression.GZIP])
def test_hostile_archive_is_refused_by_its_rule(case: str, compression: Compression) -> None:
    build, rule, limits = HOSTILE[case]
    data = build()
    if compression is not Compression.NONE and not case.startswith(
        ("not-an-archive", "truncated-gz", "truncated-xz", "corrupt")
    ):
        data = COMPRESS[compression](data)
    with pytest.raises(AciError) as info:
        inspect(data, limits)
    err = info.value
    assert err.rule == rule, str(err)
    assert isinstance(err, RemoteLiedError)
    assert err.hint
    assert f"[{rule}]" in str(err)

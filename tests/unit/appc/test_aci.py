"""ACI inspection: good archives in every compression, each hostile archive refused by its rule.

Archives are built in-test with tarfile (tiny); hostile builders are named after what they
catch (CONVENTIONS 12) so a fixed hole stays fixed.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustd.appc.aci import AciError, AciInfo, AciLimits, Compression, image_id_short, inspect_aci
from trustd.errors import LocalStateError, RemoteLiedError, UserError

VECTORS = Path(__file__).parents[2] / "vectors"
LIMITS = AciLimits()
MANIFEST = json.dumps(
    {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": "example.com/app",
        "labels": [{"name": "os", "value": "linux"}, {"name": "arch", "value": "amd64"}],
    }
).encode()


@dataclass
class E:
    """One tar entry to write."""

    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    linkname: str = ""
    mode: int = 0o644
    pax: dict[str, str] = field(default_factory=dict)

    def info(self) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(self.name)
        ti.type, ti.linkname, ti.mode, ti.pax_headers = (
            self.type,
            self.linkname,
            self.mode,
            self.pax,
        )
        ti.size = len(self.data) if ti.isreg() else 0
        return ti


def d(name: str) -> E:
    return E(name, tarfile.DIRTYPE, mode=0o755)


def sym(name: str, target: str) -> E:
    return E(name, tarfile.SYMTYPE, linkname=target)


def hard(name: str, target: str) -> E:
    return E(name, tarfile.LNKTYPE, linkname=target)


def good(*extra: E) -> list[E]:
    return [
        E("manifest", data=MANIFEST),
        d("rootfs"),
        d("rootfs/bin"),
        E("rootfs/bin/app", data=b"x"),
        *extra,
    ]


def tar_bytes(entries: list[E], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for e in entries:
            tar.addfile(e.info(), io.BytesIO(e.data) if e.data else None)
    return buf.getvalue()


COMPRESS: dict[Compression, Callable[[bytes], bytes]] = {
    Compression.GZIP: gzip.compress,
    Compression.BZIP2: bz2.compress,
    Compression.XZ: lzma.compress,
    Compression.NONE: lambda b: b,
}


def inspect(data: bytes, limits: AciLimits = LIMITS, **kw: bool) -> AciInfo:
    return inspect_aci(io.BytesIO(data), limits=limits, name="test.aci", **kw)


# -- accepted -------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", list(Compression))
def test_good_archive_in_each_compression(compression: Compression) -> None:
    plain = tar_bytes(good(sym("rootfs/bin/sh", "app"), hard("rootfs/bin/app2", "rootfs/bin/app")))
    info = inspect_aci(io.BytesIO(COMPRESS[compression](plain)), limits=LIMITS)
    assert info.compression is compression
    assert info.image_id == "sha512-" + hashlib.sha512(plain).hexdigest()
    assert info.uncompressed_size == len(plain)
    assert info.entry_count == 6
    assert info.manifest_bytes == MANIFEST
    assert str(info.manifest.name) == "example.com/app"
    assert not info.has_setuid


@pytest.mark.parametrize(
    "aci", sorted((VECTORS / "rkt/trust-scenario").glob("*.aci")), ids=lambda p: p.name
)
def test_rkt_trust_scenario_acis(aci: Path) -> None:
    info = inspect_aci(aci, limits=LIMITS)
    expected = hashlib.sha512(gzip.decompress(aci.read_bytes())).hexdigest()
    assert info.image_id == f"sha512-{expected}"
    assert info.compression is Compression.GZIP
    assert str(info.manifest.name) == aci.name.removesuffix(".aci").replace("_", "/")


def test_image_id_covers_end_padding_and_short_form() -> None:
    plain = tar_bytes(good()) + b"\0" * 10240  # extra zero records after the end blocks
    info = inspect(COMPRESS[Compression.GZIP](plain))
    assert info.image_id == "sha512-" + hashlib.sha512(plain).hexdigest()
    short = image_id_short(info.image_id)
    assert short == info.image_id[: len("sha512-") + 32]
    with pytest.raises(UserError):
        image_id_short("sha256-abc")


def test_dot_slash_prefixes_and_archive_root_are_tolerated() -> None:
    entries = [d("./"), E("./manifest", data=MANIFEST), d("./rootfs/"), E("./rootfs/a", data=b"1")]
    assert inspect(tar_bytes(entries)).entry_count == 4


def test_absolute_symlink_targets_stay_in_the_container() -> None:
    entries = good(sym("rootfs/dev/stdin", "/proc/self/fd/0"), sym("rootfs/lib64", "/usr/../lib"))
    assert inspect(tar_bytes(entries)).entry_count == 6


def test_setuid_files_are_reported_not_refused() -> None:
    info = inspect(tar_bytes(good(E("rootfs/bin/su", data=b"x", mode=0o4755), d("rootfs/tmp"))))
    assert info.has_setuid
    assert info.setuid_paths == ("rootfs/bin/su",)


def test_devices_only_when_allowed() -> None:
    data = tar_bytes(good(E("rootfs/null", tarfile.CHRTYPE), E("rootfs/fifo", tarfile.FIFOTYPE)))
    assert inspect(data, allow_devices=True).entry_count == 6


def test_path_input_and_errors_outside_the_archive(tmp_path: Path) -> None:
    path = tmp_path / "a.aci"
    path.write_bytes(gzip.compress(tar_bytes(good())))
    assert inspect_aci(path, limits=LIMITS).entry_count == 4
    assert inspect_aci(str(path), limits=LIMITS).entry_count == 4
    with pytest.raises(UserError, match="cannot open"):
        inspect_aci(tmp_path / "missing.aci", limits=LIMITS)

    class Failing(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b: object) -> int:
            raise OSError("connection reset")

    with pytest.raises(LocalStateError, match="connection reset"):
        inspect_aci(io.BufferedReader(Failing()), limits=LIMITS)


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
    "tar-symlink-escape-absolute-dotdot": (
        lambda: tar_bytes(good(sym("rootfs/l", "/../../etc/passwd"))),
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


def _materialise(entries: list[tuple[str, str, str]], top: Path) -> None:
    """Independent oracle: build the accepted tree on disk and let the kernel resolve it.

    Absolute symlink targets are rewritten relative to the rootfs, as a container sees them.
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
            inside = os.path.normpath(f"{root}/{target}")
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

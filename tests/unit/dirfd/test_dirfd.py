"""Root's fd-relative file operations: nothing resolves above the directory fd or through a
symlink, whatever the path says (property tests plant symlinks and ``..`` at random); mount
targets resolve inside a rootfs (RESOLVE_IN_ROOT) on a real kernel (openat2)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustd.privileged import _dirfd
from trustd.shared.errors import LocalStateError

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown/ownership checks need root")


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """``base/`` with a file, a subdir, and symlinks out (absolute and relative) and in."""
    base = tmp_path / "base"
    (base / "sub").mkdir(parents=True)
    (base / "sub" / "file").write_bytes(b"inside")
    (tmp_path / "outside").write_bytes(b"outside")
    (base / "out-abs").symlink_to(tmp_path / "outside")
    (base / "out-rel").symlink_to("../outside")
    (base / "in").symlink_to("sub/file")
    (base / "dirlink").symlink_to("sub")
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    yield base, fd
    os.close(fd)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 100)
    finally:
        os.close(fd)


def test_open_beneath_reads_plain_paths(tree: tuple[Path, int]) -> None:
    _base, fd = tree
    assert _read(_dirfd.open_beneath(fd, "sub/file", os.O_RDONLY)) == b"inside"
    assert _read(_dirfd.open_beneath(fd, "sub/../sub/file", os.O_RDONLY)) == b"inside"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("out-abs", "symlink"),
        ("out-rel", "symlink"),
        ("in", "symlink"),  # even a symlink that stays inside
        ("dirlink/file", "symlink"),
        ("../outside", "leaves its directory"),
        ("sub/../../outside", "leaves its directory"),
        ("/etc/passwd", "not a relative path"),
        ("", "not a relative path"),
    ],
)
def test_open_beneath_refuses_escapes_and_symlinks(
    tree: tuple[Path, int], path: str, message: str
) -> None:
    _base, fd = tree
    with pytest.raises(LocalStateError, match=message):
        _dirfd.open_beneath(fd, path, os.O_RDONLY)


def test_open_beneath_missing_is_file_not_found(tree: tuple[Path, int]) -> None:
    with pytest.raises(FileNotFoundError):
        _dirfd.open_beneath(tree[1], "sub/none", os.O_RDONLY)


def test_open_in_root_keeps_everything_inside(tree: tuple[Path, int]) -> None:
    base, fd = tree
    (base / "etc").mkdir()
    (base / "etc" / "passwd").write_bytes(b"the rootfs's passwd")
    (base / "abs").symlink_to("/etc/passwd")  # an absolute link means the rootfs's /etc
    assert _read(_dirfd.open_in_root(fd, "/etc/passwd", os.O_RDONLY)) == b"the rootfs's passwd"
    assert _read(_dirfd.open_in_root(fd, "abs", os.O_RDONLY)) == b"the rootfs's passwd"
    assert _read(_dirfd.open_in_root(fd, "../../etc/passwd", os.O_RDONLY)) == (
        b"the rootfs's passwd"
    )
    with pytest.raises(FileNotFoundError):  # tmp_path/outside, seen from inside: not there
        _dirfd.open_in_root(fd, "out-rel", os.O_RDONLY)
    with pytest.raises(LocalStateError, match=r"symlink|leaves"):  # /proc magic links
        (base / "magic").symlink_to("/proc/self/root")
        _dirfd.open_in_root(os.open("/", os.O_RDONLY | os.O_DIRECTORY), "proc/self/root", 0)


_SEGMENTS = st.sampled_from(
    ["..", ".", "sub", "file", "out-abs", "out-rel", "in", "dirlink", "none", "/", "//"]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_SEGMENTS, min_size=1, max_size=8))
def test_beneath_never_escapes_and_never_follows(
    tree: tuple[Path, int], segments: list[str]
) -> None:
    base, fd = tree
    path = "/".join(segments)
    try:
        opened = _dirfd.open_beneath(fd, path, os.O_RDONLY)
    except (LocalStateError, FileNotFoundError, NotADirectoryError):
        return
    try:
        real = Path(f"/proc/self/fd/{opened}").readlink()
        assert real == base or base in real.parents
        assert not stat.S_ISLNK(os.fstat(opened).st_mode)
        # no component on the way was a symlink: the lexical walk from base is the real one
        walked = base
        for part in path.split("/"):
            if part in ("", "."):
                continue
            walked = walked.parent if part == ".." else walked / part
            assert not walked.is_symlink()
    finally:
        os.close(opened)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_SEGMENTS, min_size=1, max_size=8))
def test_in_root_never_leaves_the_root(tree: tuple[Path, int], segments: list[str]) -> None:
    base, fd = tree
    try:
        opened = _dirfd.open_in_root(fd, "/".join(segments), os.O_RDONLY)
    except (LocalStateError, FileNotFoundError, NotADirectoryError):
        return
    try:
        real = Path(f"/proc/self/fd/{opened}").readlink()
        assert real == base or base in real.parents
    finally:
        os.close(opened)


@pytest.fixture
def rootfs(tmp_path: Path) -> Iterator[tuple[Path, Path, int]]:
    """A fake rootfs with the image's tricks: an absolute symlink ``/data -> /etc``, a
    relative one climbing out (``up -> ../../..``), a dangling one and a file in the way.
    Outside it sits a ``host`` dir that nothing may create anything in."""
    host = tmp_path / "host"
    root = tmp_path / "rootfs"
    (host / "etc").mkdir(parents=True)
    (root / "etc").mkdir(parents=True)
    (root / "data").symlink_to("/etc")
    (root / "up").symlink_to("../../..")
    (root / "dangling").symlink_to("/nowhere/at/all")
    (root / "file").write_text("x")
    fd = _dirfd.open_root(root)
    yield root, host, fd
    os.close(fd)


@pytest.mark.parametrize(
    ("target", "lands"),
    [
        ("/data", "etc"),
        ("/data/sub/dir", "etc/sub/dir"),
        ("/up/data/x", "etc/x"),  # climbing out is clamped at the rootfs
        ("/new/a/b", "new/a/b"),
        ("/", "."),
    ],
)
def test_mount_targets_land_inside_the_rootfs(
    rootfs: tuple[Path, Path, int], target: str, lands: str
) -> None:
    root, host, rootfd = rootfs
    before = sorted(p.name for p in host.rglob("*"))
    fd = _dirfd.makedirs_in_root(rootfd, target)
    try:
        assert Path(_dirfd.fd_path(fd)).readlink() == (root / lands).resolve()
    finally:
        os.close(fd)
    assert sorted(p.name for p in host.rglob("*")) == before
    assert not Path("/etc/sub").exists()


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("/dangling", "dangling symlink"),
        ("/file/below", "Not a directory"),
        ("/a/../b", "'..'"),
    ],
)
def test_refused_mount_targets(rootfs: tuple[Path, Path, int], target: str, error: str) -> None:
    _, _, rootfd = rootfs
    with pytest.raises(OSError, match=error):
        _dirfd.makedirs_in_root(rootfd, target)
    assert not Path("/nowhere").exists()


def test_rmtree_at_removes_links_never_their_targets(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    (victim / "deep").mkdir(parents=True)
    (victim / "deep" / "keep").write_bytes(b"keep me")
    doomed = tmp_path / "doomed"
    (doomed / "a" / "b").mkdir(parents=True)
    (doomed / "a" / "b" / "f").write_bytes(b"x")
    (doomed / "a" / "link").symlink_to(victim)
    (doomed / "a" / "b" / "link2").symlink_to(victim / "deep")
    os.mkfifo(doomed / "fifo")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _dirfd.rmtree_at(fd, "doomed")
        _dirfd.rmtree_at(fd, "doomed")  # missing: nothing to do
        (tmp_path / "alink").symlink_to(victim)
        _dirfd.rmtree_at(fd, "alink")  # the link goes, its target stays
        with pytest.raises(LocalStateError, match="single file name"):
            _dirfd.rmtree_at(fd, "victim/deep")
        with pytest.raises(LocalStateError, match="single file name"):
            _dirfd.rmtree_at(fd, "..")
    finally:
        os.close(fd)
    assert not doomed.exists() and not (tmp_path / "alink").is_symlink()
    assert (victim / "deep" / "keep").read_bytes() == b"keep me"


@needs_root
def test_ensure_private_dir_creates_and_checks(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.close(_dirfd.ensure_private_dir(fd, "private"))
        st_ = (tmp_path / "private").stat()
        assert (st_.st_uid, st_.st_gid, stat.S_IMODE(st_.st_mode)) == (0, 0, 0o700)
        os.close(_dirfd.ensure_private_dir(fd, "private"))  # again: accepted as it is
        (tmp_path / "open").mkdir(mode=0o777)
        (tmp_path / "open").chmod(0o777)
        with pytest.raises(LocalStateError, match="not root's with mode 700"):
            _dirfd.ensure_private_dir(fd, "open")
        (tmp_path / "link").symlink_to(tmp_path / "private")
        with pytest.raises(LocalStateError, match="symlink"):
            _dirfd.ensure_private_dir(fd, "link")
        (tmp_path / "file").write_bytes(b"")
        with pytest.raises(LocalStateError, match="non-directory"):
            _dirfd.ensure_private_dir(fd, "file")
    finally:
        os.close(fd)


@needs_root
def test_ensure_dir_never_changes_a_symlink_target(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir(mode=0o700)
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "tmp").symlink_to(target)
    fd = os.open(tmp_path / "store", os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(LocalStateError, match="symlink"):
            _dirfd.ensure_dir(fd, "tmp", 0o2770, gid=1)
        os.close(_dirfd.ensure_dir(fd, "made", 0o2770, gid=1))
    finally:
        os.close(fd)
    st_ = target.stat()
    assert (st_.st_uid, st_.st_gid, stat.S_IMODE(st_.st_mode)) == (0, 0, 0o700)
    made = (tmp_path / "store" / "made").stat()
    assert (made.st_gid, stat.S_IMODE(made.st_mode)) == (1, 0o2770)


@needs_root
def test_check_root_owned_refuses_writable_or_foreign_dirs() -> None:
    base = Path(tempfile.mkdtemp(prefix="trustd-dirfd-", dir="/tmp"))
    try:
        base.chmod(0o755)
        (base / "ok" / "data").mkdir(parents=True)
        os.close(_dirfd.check_root_owned(base / "ok" / "data"))  # /tmp is sticky: accepted
        (base / "gw").mkdir(mode=0o775)
        (base / "gw").chmod(0o775)
        (base / "gw" / "data").mkdir()
        with pytest.raises(LocalStateError, match="not writable by group or others"):
            _dirfd.check_root_owned(base / "gw" / "data")
        (base / "theirs").mkdir()
        os.chown(base / "theirs", 65534, -1)
        with pytest.raises(LocalStateError, match="owned by uid 65534"):
            _dirfd.check_root_owned(base / "theirs")
        (base / "link").symlink_to(base / "ok")
        with pytest.raises(LocalStateError, match="symlink"):
            _dirfd.check_root_owned(base / "link" / "data")
        with pytest.raises(FileNotFoundError):
            _dirfd.check_root_owned(base / "none")
    finally:
        shutil.rmtree(base)


def test_read_and_write_beneath(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _dirfd.write_file_at(fd, "f", b"data", 0o640)
        assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o640
        assert _dirfd.read_beneath(fd, "f", 4) == b"data"
        with pytest.raises(LocalStateError, match="more than 3"):
            _dirfd.read_beneath(fd, "f", 3)
        os.mkfifo(tmp_path / "fifo")
        with pytest.raises(LocalStateError, match="not a regular file"):
            _dirfd.read_beneath(fd, "fifo", 10)
        (tmp_path / "victim").write_bytes(b"victim")
        (tmp_path / "g").symlink_to(tmp_path / "victim")
        _dirfd.write_file_at(fd, "g", b"new")  # replaces the link, never writes through it
        assert (tmp_path / "victim").read_bytes() == b"victim"
        assert (tmp_path / "g").read_bytes() == b"new" and not (tmp_path / "g").is_symlink()
    finally:
        os.close(fd)


@needs_root
def test_rmtree_at_foreign_only_never_enters_roots_directories(tmp_path: Path) -> None:
    """In a directory others can write, root removes only what their owners could."""
    doomed = tmp_path / "import-x"
    (doomed / "theirs").mkdir(parents=True)
    (doomed / "theirs" / "f").write_bytes(b"")
    moved_in = doomed / "roots"  # e.g. a root-owned directory moved in mid-walk
    moved_in.mkdir()
    (moved_in / "keep").write_bytes(b"root's")
    for p in (doomed, doomed / "theirs"):
        os.chown(p, 65534, 65534)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _dirfd.rmtree_at(fd, "import-x", foreign_only=True)
    finally:
        os.close(fd)
    assert not (doomed / "theirs").exists()
    assert (moved_in / "keep").read_bytes() == b"root's"


def _chain(top: Path, depth: int) -> None:
    """``top`` and a chain of ``depth`` directories below it, a file and a link at the end
    (made by fd: the path is far longer than PATH_MAX)."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
    os.symlink("/etc", "up", dir_fd=fd)
    os.close(fd)


def test_rmtree_at_removes_any_depth_without_recursion(tmp_path: Path) -> None:
    """A chain of 5000 directories (what a pod's app or a member may leave): removed, with
    no RecursionError, no fd exhaustion, and the link at the bottom never followed."""
    _chain(tmp_path / "deep", 5000)
    (tmp_path / "deep" / "side").mkdir()  # a sibling beside the chain
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _dirfd.rmtree_at(fd, "deep")
    finally:
        os.close(fd)
    assert not (tmp_path / "deep").exists()
    assert Path("/etc/passwd").exists()
    assert len(os.listdir("/proc/self/fd")) < 64  # noqa: PTH208 - nothing left open


@needs_root
def test_rmtree_at_foreign_only_removes_a_deep_foreign_chain(tmp_path: Path) -> None:
    _chain(tmp_path / "import-y", 300)
    for dirpath, _dirs, _files in os.walk(tmp_path / "import-y"):
        os.chown(dirpath, 65534, 65534)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _dirfd.rmtree_at(fd, "import-y", foreign_only=True)
    finally:
        os.close(fd)
    assert not (tmp_path / "import-y").exists()


_NODES = st.recursive(
    st.sampled_from(["file", "link-out", "link-dir-out", "link-up"]),
    lambda children: st.dictionaries(st.sampled_from("abcde"), children, max_size=4),
    max_leaves=12,
)


def _build(at: Path, node: object, outside: Path) -> None:
    if isinstance(node, dict):
        at.mkdir()
        for name, child in node.items():
            _build(at / name, child, outside)
    elif node == "file":
        at.write_bytes(b"x")
    elif node == "link-out":
        at.symlink_to(outside / "keep")
    elif node == "link-dir-out":
        at.symlink_to(outside)
    else:
        at.symlink_to("../../..")


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from("abcde"), _NODES, max_size=4))
def test_rmtree_at_removes_exactly_the_tree(tmp_path: Path, tree_spec: dict[str, object]) -> None:
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    outside = work / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"keep")
    _build(work / "doomed", tree_spec, outside)
    fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _dirfd.rmtree_at(fd, "doomed")
    finally:
        os.close(fd)
    assert sorted(p.name for p in work.iterdir()) == ["outside"]
    assert [p.name for p in outside.iterdir()] == ["keep"]
    assert (outside / "keep").read_bytes() == b"keep"


def _fd_real(fd: int) -> str:
    try:
        return str(Path(f"/proc/self/fd/{fd}").readlink())
    finally:
        os.close(fd)


@needs_root
def test_a_host_path_follows_roots_links_as_the_kernel_would(tmp_path: Path) -> None:
    """Root's links (relative, absolute, with ``..``) resolve as realpath() does."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "rel").symlink_to("a/b")
    (tmp_path / "abs").symlink_to(tmp_path / "a")
    (tmp_path / "a" / "up").symlink_to("../rel")
    for name in ("rel", "abs/b", "a/up", "a/up/../b", "abs/up"):
        path = str(tmp_path / name)
        assert _fd_real(_dirfd.open_host_path(path)) == os.path.realpath(path), name


@needs_root
def test_a_host_path_through_another_users_link_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    os.lchown(tmp_path / "link", 1000, 1000)
    with pytest.raises(OSError, match=r"a link another user made \(uid 1000\)"):
        _dirfd.open_host_path(str(tmp_path / "link" / "x"))
    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    with pytest.raises(OSError, match="too many levels"):
        _dirfd.open_host_path(str(loop))

"""Root's file operations on shared state: relative to a checked directory fd, no symlinks.

Group ``rkt`` can write the shared store, so any path root walks there may have been replaced
by a symlink, a FIFO or a directory of the group's choosing between two system calls. Every
operation here starts from a directory fd root has already checked and resolves the rest with
``openat2(2)``: ``RESOLVE_BENEATH`` (never above the fd, not even through ``..``),
``RESOLVE_NO_SYMLINKS`` (no symlink in any component) and ``RESOLVE_NO_MAGICLINKS``.
Names are created with ``mkdirat``/``openat(O_EXCL)`` and owners and modes are changed on the
opened fd (``fchown``/``fchmod``), never by path. Every failure is a
:class:`~trustd.shared.errors.LocalStateError` naming the path, with a hint.

Paths inside a container rootfs (mount points, volume targets) are resolved as if the rootfs
were ``/``: ``RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS`` from the rootfs's fd
(:func:`open_in_root`, :func:`makedirs_in_root`), so an image's ``/data -> /etc`` means the
rootfs's ``/etc``, never the host's (issue #10, class 6). A mount then names the resolved fd
(:func:`fd_path`), so it lands on exactly what was resolved.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
from pathlib import Path
from typing import Any

from trustd.shared.errors import DISK_FULL, LocalStateError, disk_full_error

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
BENEATH = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
IN_ROOT = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS

O_PATH = getattr(os, "O_PATH", 0o10000000)

_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437, "armv7l": 437, "riscv64": 437}
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_HINT = "a member of group rkt may have replaced it; check the data directory (--dir)"


class _OpenHow(ctypes.Structure):
    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _fd_target(fd: int) -> str:
    try:
        return str(Path(f"/proc/self/fd/{fd}").readlink())
    except OSError:
        return f"<fd {fd}>"


def _where(dirfd: int, path: str) -> str:
    return f"{_fd_target(dirfd)}/{path}"


def openat2(dirfd: int, path: str, flags: int, mode: int, resolve: int) -> int:
    """The raw system call; raises OSError (errno as the kernel set it)."""
    machine = os.uname().machine  # platform.machine()'s answer, without importing platform
    number = _SYS_OPENAT2.get(machine)
    if number is None:  # pragma: no cover - only the architectures above are supported
        raise OSError(errno.ENOSYS, f"openat2 is not known on {machine}")
    how = _OpenHow(flags | os.O_CLOEXEC, mode if flags & os.O_CREAT else 0, resolve)
    fd = _libc.syscall(
        ctypes.c_long(number),
        ctypes.c_int(dirfd),
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(fd)


def _refusal(dirfd: int, path: str, exc: OSError) -> LocalStateError:
    where = _where(dirfd, path)
    if exc.errno == errno.ENOTDIR:  # O_DIRECTORY|O_NOFOLLOW on a symlink says ENOTDIR
        with contextlib.suppress(OSError):
            if stat.S_ISLNK(os.stat(path, dir_fd=dirfd, follow_symlinks=False).st_mode):
                return LocalStateError(f"{where}: a symlink is in the way", hint=_HINT)
    if exc.errno == errno.ELOOP:
        return LocalStateError(f"{where}: a symlink is in the way", hint=_HINT)
    if exc.errno == errno.EXDEV:
        return LocalStateError(f"{where}: the path leaves its directory", hint=_HINT)
    if exc.errno == errno.ENOTDIR:
        return LocalStateError(f"{where}: a non-directory is in the way", hint=_HINT)
    if exc.errno in DISK_FULL:
        return disk_full_error(exc, where)
    return LocalStateError(
        f"{where}: {exc.strerror}", hint="check the data directory (--dir) and its permissions"
    )


def _check_relative(dirfd: int, relpath: str) -> None:
    if not relpath or relpath.startswith("/") or "\0" in relpath:
        raise LocalStateError(
            f"{_where(dirfd, relpath)}: not a relative path", hint="this is a bug in trustd"
        )


def open_beneath(dirfd: int, relpath: str, flags: int, mode: int = 0o600) -> int:
    """Open ``relpath`` strictly beneath ``dirfd``: no ``..`` above it, no symlink anywhere."""
    _check_relative(dirfd, relpath)
    try:
        return openat2(dirfd, relpath, flags, mode, BENEATH)
    except OSError as exc:
        if exc.errno == errno.ENOENT and not flags & os.O_CREAT:
            raise FileNotFoundError(exc.errno, exc.strerror, _where(dirfd, relpath)) from None
        raise _refusal(dirfd, relpath, exc) from exc


def open_in_root(rootfd: int, path: str, flags: int) -> int:
    """Open ``path`` as if ``rootfd`` were ``/`` (a container rootfs): absolute paths, ``..``
    and symlinks all resolve inside it, never out; magic links are refused."""
    if not path or "\0" in path:
        raise LocalStateError(f"{_where(rootfd, path)}: not a path", hint="this is a bug in trustd")
    try:
        return openat2(rootfd, path, flags, 0o600, IN_ROOT)
    except OSError as exc:
        if exc.errno == errno.ENOENT and not flags & os.O_CREAT:
            raise FileNotFoundError(exc.errno, exc.strerror, _where(rootfd, path)) from None
        raise _refusal(rootfd, path, exc) from exc


def _target_parts(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise OSError(errno.EINVAL, "a mount target must not contain '..'", path)
    return parts


def makedirs_in_root(rootfd: int, path: str, mode: int = 0o755) -> int:
    """An ``O_PATH`` fd of directory ``path`` inside the root (resolved as by
    :func:`open_in_root`), creating missing components with mkdirat under their resolved
    parent. A component that is a file, or a dangling symlink, is refused with an OSError
    (stage1 reports it as the app's failure to start)."""
    current = os.dup(rootfd)
    walked = ""
    try:
        for part in _target_parts(path):
            walked = f"{walked}/{part}"
            try:
                nxt = openat2(rootfd, walked, O_PATH | os.O_DIRECTORY, 0, IN_ROOT)
            except FileNotFoundError:
                try:
                    os.mkdir(part, mode, dir_fd=current)
                except FileExistsError as exc:
                    raise OSError(
                        errno.ENOENT, "a dangling symlink in the image; refusing it", walked
                    ) from exc
                nxt = openat2(rootfd, walked, O_PATH | os.O_DIRECTORY, 0, IN_ROOT)
            os.close(current)
            current = nxt
    except BaseException:
        os.close(current)
        raise
    return current


def open_root(root: Path) -> int:
    """A rootfs directory itself, as an ``O_PATH`` fd (a path root built under the pod's
    private dir; the last component is not followed)."""
    return os.open(root, O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def fd_path(fd: int) -> str:
    """The magic link a mount(2) target may name to mean exactly this fd's file."""
    return f"/proc/self/fd/{fd}"


def open_dir(dirfd: int, relpath: str) -> int:
    """A directory beneath ``dirfd`` (no symlinks), as an fd."""
    return open_beneath(dirfd, relpath, os.O_RDONLY | os.O_DIRECTORY)


def _single_name(parent_fd: int, name: str) -> None:
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise LocalStateError(
            f"{_where(parent_fd, name)}: not a single file name", hint="this is a bug in trustd"
        )


def ensure_dir(
    parent_fd: int, name: str, mode: int, *, uid: int = 0, gid: int = 0, foreign_ok: bool = False
) -> int:
    """``name`` in ``parent_fd`` as a directory owned ``uid:gid`` with ``mode`` (created if
    missing, fixed on the fd if not); a symlink or non-directory there is refused. With
    ``foreign_ok``, a directory someone other than ``uid`` owns is returned untouched."""
    _single_name(parent_fd, name)
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o700, dir_fd=parent_fd)
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        raise _refusal(parent_fd, name, exc) from exc
    try:
        st = os.fstat(fd)
        if foreign_ok and st.st_uid != uid:
            return fd
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.fchown(fd, uid, gid)
        if stat.S_IMODE(st.st_mode) != mode:
            os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_private(fd: int, where: str, mode: int) -> None:
    st = os.fstat(fd)
    if st.st_uid != 0 or st.st_mode & 0o077 & ~mode:
        raise LocalStateError(
            f"{where} is owned by uid {st.st_uid} with mode "
            f"{stat.S_IMODE(st.st_mode):o}, not root's with mode {mode:o}",
            hint="root-only state must not be writable by anyone else; move it aside "
            "and run again (it will be re-created)",
        )


def ensure_private_dir(parent_fd: int, name: str, mode: int = 0o700) -> int:
    """A root-only directory: created ``root:root`` with ``mode``; one that exists must
    already be root's and not writable or readable by anyone else (it is never "fixed": a
    directory someone else owned may hold their files)."""
    _single_name(parent_fd, name)
    created = True
    try:
        os.mkdir(name, mode, dir_fd=parent_fd)
    except FileExistsError:
        created = False
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        raise _refusal(parent_fd, name, exc) from exc
    try:
        if created:
            os.fchown(fd, 0, 0)
            os.fchmod(fd, mode)
        else:
            _check_private(fd, _where(parent_fd, name), mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


_MAX_OPEN_DEPTH = 64  # directories held open at once while removing a tree


def _lift(dirfd: int, name: str, top: int) -> str:
    """Move directory ``name`` (in ``dirfd``) up into ``top`` under a fresh name; that name."""
    while True:
        lifted = f".rm-{os.urandom(8).hex()}"
        try:
            os.rename(name, lifted, src_dir_fd=dirfd, dst_dir_fd=top)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                continue  # that name is taken (a member's, in cas/tmp): another
            raise
        return lifted


def _empty_dir(top: int, start: int, foreign_only: bool, lifted: list[str]) -> None:
    """Remove everything in directory ``start`` (beneath ``top``) without recursion and with
    at most _MAX_OPEN_DEPTH directories open: a subdirectory met deeper than that is moved
    up into ``top`` (appended to ``lifted``) and emptied later, so any depth is removed."""
    stack: list[tuple[int, Any, str]] = [(start, os.scandir(start), "")]
    try:
        while stack:
            fd, entries, name = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                entries.close()
                if stack:  # emptied a subdirectory: close it and remove it from its parent
                    os.close(fd)
                    with contextlib.suppress(FileNotFoundError, OSError):
                        os.rmdir(name, dir_fd=stack[-1][0])
                continue
            if not entry.is_dir(follow_symlinks=False):  # files, symlinks (never followed),
                with contextlib.suppress(FileNotFoundError):  # fifos, sockets, devices
                    os.unlink(entry.name, dir_fd=fd)
                continue
            try:
                child = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                continue
            if foreign_only and os.fstat(child).st_uid == 0:
                os.close(child)  # root's: never entered (its parent stays, not empty)
                continue
            if len(stack) >= _MAX_OPEN_DEPTH:
                os.close(child)
                lifted.append(_lift(fd, entry.name, top))
                continue
            stack.append((child, os.scandir(child), entry.name))
    finally:
        for fd, entries, _ in stack:
            entries.close()
            if fd != start:
                os.close(fd)


def _rmtree_fd(dirfd: int, foreign_only: bool) -> None:
    """Empty ``dirfd`` whatever the depth of what it holds (a pod's app or an image may
    leave a chain of thousands of directories: recursion would run out of stack or fds)."""
    lifted: list[str] = []
    _empty_dir(dirfd, dirfd, foreign_only, lifted)
    while lifted:
        name = lifted.pop()
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=dirfd)
        except FileNotFoundError:
            continue
        try:
            if foreign_only and os.fstat(fd).st_uid == 0:
                continue
            _empty_dir(dirfd, fd, foreign_only, lifted)
        finally:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError, OSError):
            os.rmdir(name, dir_fd=dirfd)


def rmtree_at(parent_fd: int, name: str, *, foreign_only: bool = False) -> None:
    """Remove ``name`` in ``parent_fd`` and everything under it; a symlink is removed, never
    followed, and nothing outside ``parent_fd`` is touched. Missing is not an error.

    ``foreign_only`` is for trees in directories others can write (``cas/tmp``): a directory
    root owns is never entered there, so root removes only what the directories' owners
    could remove themselves, even if they move other directories in mid-walk."""
    _single_name(parent_fd, name)
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    try:
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=parent_fd)
            return
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        try:
            if foreign_only and os.fstat(fd).st_uid == 0:
                return
            _rmtree_fd(fd, foreign_only)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=parent_fd)
    except FileNotFoundError:
        return
    except OSError as exc:
        if foreign_only and exc.errno == errno.ENOTEMPTY:
            return  # a directory of root's is inside: left where it is
        raise _refusal(parent_fd, name, exc) from exc


def _check_dir_fd(fd: int, path: str, *, leaf: bool) -> None:
    st = os.fstat(fd)
    sticky = bool(st.st_mode & stat.S_ISVTX)
    writable = st.st_mode & 0o022
    if st.st_uid != 0 or (writable and (leaf or not sticky)):
        raise LocalStateError(
            f"{path} is owned by uid {st.st_uid} with mode {stat.S_IMODE(st.st_mode):o}: "
            "root's data directory and every directory above it must be owned by root and "
            "not writable by group or others",
            hint=f"chown root {path} && chmod go-w {path}, or choose another --dir",
        )


def check_root_owned(path: Path) -> int:
    """An fd for directory ``path``, opened component by component from ``/`` without
    following symlinks; it and every ancestor are root's and not group/other-writable (an
    ancestor may be a sticky directory such as ``/tmp``)."""
    if not path.is_absolute() or any(p in (".", "..") for p in path.parts):
        raise LocalStateError(f"{path} is not a plain absolute path", hint="give --dir as one")
    fd = os.open("/", _DIR_FLAGS)
    so_far = Path("/")
    try:
        _check_dir_fd(fd, "/", leaf=path == so_far)
        parts = path.parts[1:]
        for i, part in enumerate(parts):
            so_far /= part
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    raise FileNotFoundError(exc.errno, exc.strerror, str(so_far)) from None
                raise _refusal(fd, part, exc) from exc
            os.close(fd)
            fd = child
            _check_dir_fd(fd, str(so_far), leaf=i == len(parts) - 1)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_beneath(dirfd: int, relpath: str, max_bytes: int) -> bytes:
    """A regular file beneath ``dirfd`` read whole, refused when larger than ``max_bytes``."""
    fd = open_beneath(dirfd, relpath, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise LocalStateError(f"{_where(dirfd, relpath)} is not a regular file", hint=_HINT)
        if st.st_size > max_bytes:
            raise LocalStateError(
                f"{_where(dirfd, relpath)} is {st.st_size} bytes, more than {max_bytes}",
                hint=_HINT,
            )
        chunks, left = [], max_bytes + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise LocalStateError(f"{_where(dirfd, relpath)} grew past {max_bytes} bytes", hint=_HINT)
    return data


def write_file_at(dirfd: int, name: str, data: bytes, mode: int = 0o600) -> None:
    """Replace ``name`` in ``dirfd`` with ``data``: a temp file (``O_EXCL``), fsync, rename."""
    _single_name(dirfd, name)
    tmp = f".{name}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dirfd)
    fd = os.open(
        tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dirfd
    )
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
    os.fsync(dirfd)

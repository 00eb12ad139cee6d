"""The paths a mount names (private to :mod:`._dirfd`): inside a container rootfs, resolved
as if the rootfs were ``/`` (``RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS``); a host volume's
source, resolved from ``/`` following only root's own links; and the magic link that names
exactly the fd resolved (:func:`fd_path`)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from trustd.privileged._dirfd_openat2 import IN_ROOT, O_PATH, _refusal, _where, openat2
from trustd.shared.errors import LocalStateError


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


_MAX_HOPS = 40  # Linux's MAXSYMLINKS


def _root_link_target(link_fd: int, where: str, path: str, hops: int) -> str:
    """The target of the symlink ``link_fd`` (an ``O_PATH|O_NOFOLLOW`` fd) when root owns
    it, read from that fd (not from a name another link could have taken since)."""
    st = os.fstat(link_fd)
    if st.st_uid != 0:
        raise OSError(
            errno.EPERM,
            f"{where} is a link another user made (uid {st.st_uid}); name the real directory",
            path,
        )
    if hops > _MAX_HOPS:
        raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
    return os.readlink("", dir_fd=link_fd)


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def open_host_path(path: str) -> int:
    """An ``O_PATH`` fd of the host's absolute ``path`` (a host volume's source), resolved
    from ``/`` one component at a time: a symlink on the way is followed only when root
    owns it. A link another user made, e.g. in place of a directory group rkt shares, is
    refused with an OSError naming it. Binding the fd (:func:`fd_path`) binds exactly what
    was resolved, whatever is renamed there afterwards (red team 5)."""
    if not path.startswith("/") or "\0" in path:
        raise OSError(errno.EINVAL, "not an absolute path", path)
    top = O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
    fd, pending, walked, hops = os.open("/", top), _parts(path), "", 0
    try:
        while pending:
            part = pending.pop(0)
            nxt = os.open(part, O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            if not stat.S_ISLNK(os.fstat(nxt).st_mode):
                os.close(fd)
                fd, walked = nxt, f"{walked}/{part}"
                continue
            hops += 1
            try:
                target = _root_link_target(nxt, f"{walked}/{part}", path, hops)
            finally:
                os.close(nxt)
            if target.startswith("/"):
                os.close(fd)
                fd, walked = os.open("/", top), ""
            pending[:0] = _parts(target)
    except BaseException:
        os.close(fd)
        raise
    return fd


def fd_path(fd: int) -> str:
    """The magic link a mount(2) target may name to mean exactly this fd's file."""
    return f"/proc/self/fd/{fd}"

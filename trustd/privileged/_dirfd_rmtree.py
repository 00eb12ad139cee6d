"""Removing a tree relative to a directory fd (private to :mod:`._dirfd`): no symlink is
followed, nothing outside the fd is touched, no recursion and a bounded number of fds open
whatever the depth; with ``foreign_only``, a directory root owns is never entered."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from typing import Any

from trustd.privileged._dirfd_openat2 import (
    _DIR_FLAGS,
    _HINT,
    _refusal,
    _single_name,
    _where,
)
from trustd.shared.errors import LocalStateError

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


def rmtree_open(parent_fd: int, name: str, fd: int) -> None:
    """Remove directory ``name`` in ``parent_fd``, which the caller holds open as ``fd``:
    emptied through ``fd`` (as :func:`rmtree_at`), then removed by name once that name is
    still the same directory."""
    _single_name(parent_fd, name)
    try:
        _rmtree_fd(fd, False)
        st, here = os.fstat(fd), os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        if (st.st_dev, st.st_ino) != (here.st_dev, here.st_ino):
            raise LocalStateError(
                f"{_where(parent_fd, name)} was replaced while it was removed", hint=_HINT
            )
        os.rmdir(name, dir_fd=parent_fd)
    except OSError as exc:
        raise _refusal(parent_fd, name, exc) from exc

"""User namespaces for ``--private-users`` (rkt's flag; issue #16).

A pod run with private users gets a fresh, 65536-wide UID/GID range no host account uses:
root in the pod is ``shift`` on the host, app uid N is ``shift + N``. The stage1 keeps doing
its mounts as host root; then:

* :func:`make_userns` creates the pod's user namespace (a short-lived child unshares it, root
  writes its uid_map and gid_map, keeps ``/proc/CHILD/ns/user`` open and reaps the child);
* :func:`idmap_mount` replaces an app's overlay root with an idmapped clone of it
  (``open_tree`` + ``mount_setattr(MOUNT_ATTR_IDMAP)`` + ``move_mount``), so the image's uid 0
  files are the pod's root's files without a single chown; a kernel or filesystem that
  cannot idmap fails the run (never a silent chown);
* :func:`enter` moves an app's process into that namespace once its root is pivoted, as
  the pod's root (host ``shift``), before the app's own user, capabilities and seccomp.

Ranges are allocated by :class:`RangeAllocator` under an flock in root's ``<dir>/private``
(ADR 0022), multiples of 65536 as rkt's, never overlapping another pod's of that data dir,
a host account's, a /etc/subuid / /etc/subgid delegation, or what any live user namespace
on the host maps (another data dir's pods, another runtime's containers: the registry is
per data dir). A pod start refuses a range that a live user namespace or an account in /etc
has taken since prepare (:func:`check_unshared`).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from trustd.shared.errors import LocalStateError, PolicyViolationError

RANGE = 65536  # one pod's uids and gids: 0..65535 inside
_FIRST_BLOCK = 16  # shifts start at 16 * 65536 = 1048576, above any login account
_LAST_BLOCK = 0xFFFE  # the last block ends below 2**32 - 1 (the invalid uid)
CLONE_NEWUSER = 0x10000000

SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_IDMAP = 0x00100000

_libc = ctypes.CDLL(None, use_errno=True)
_FIX = (
    "run on a kernel with idmapped mounts on overlayfs (Linux 5.19 or later), or run the pod "
    "without --private-users"
)


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


def _ids_in_use(etc: Path) -> list[tuple[int, int]]:
    """Host ids as (start, count): accounts and groups, and sub-id delegations."""
    used: list[tuple[int, int]] = []
    for name in ("passwd", "group"):
        with contextlib.suppress(OSError):
            for line in (etc / name).read_text().splitlines():
                fields = line.split(":")
                if len(fields) > 2 and fields[2].isdigit():
                    used.append((int(fields[2]), 1))
    for name in ("subuid", "subgid"):
        with contextlib.suppress(OSError):
            for line in (etc / name).read_text().splitlines():
                fields = line.split(":")
                if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                    used.append((int(fields[1]), int(fields[2])))
    return used


def _live_mappings(proc: Path = Path("/proc")) -> list[tuple[int, int]]:
    """Host ids some live user namespace maps, as (start, count): every process's uid_map
    and gid_map other than the initial namespace's identity map. This is what another data
    dir's pods, another runtime's containers and any other user namespace on the host use
    right now, none of which the per-data-dir registry knows of."""
    used: set[tuple[int, int]] = set()
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        for name in ("uid_map", "gid_map"):
            try:
                text = Path(entry.path, name).read_text()
            except OSError:  # the process went, or is not ours to read
                continue
            for line in text.splitlines():
                fields = line.split()
                if len(fields) != 3 or not all(f.isdigit() for f in fields):
                    continue
                inner, outer, count = (int(f) for f in fields)
                if (inner, outer) == (0, 0) and count >= 0xFFFFFFFF:
                    continue  # the initial user namespace
                used.add((outer, count))
    return sorted(used)


def check_unshared(shift: int, proc: Path = Path("/proc"), etc: Path = Path("/etc")) -> None:
    """Refuse to start a pod on ``shift`` while a live user namespace (another data dir's
    pod, another runtime, an account added since prepare with a sub-id delegation used)
    maps any id of its range, or an account or delegation in /etc now touches it."""
    block = shift // RANGE
    if block in _blocks(_live_mappings(proc)) or block in _blocks(_ids_in_use(etc)):
        raise PolicyViolationError(
            f"--private-users: the pod's uid range {shift}:{RANGE} is in use by another user "
            "namespace or host account since it was prepared, and two pods must never share "
            "ids: remove the pod (rkt rm UUID) and prepare it again, which picks a free range",
            hint="rkt rm UUID, then rkt prepare --private-users again",
        )


def _blocks(used: list[tuple[int, int]]) -> set[int]:
    """The 65536-wide blocks the (start, count) id ranges touch."""
    taken: set[int] = set()
    for start, count in used:
        if count > 0:
            taken.update(range(start // RANGE, (start + count - 1) // RANGE + 1))
    return taken


class RangeAllocator:
    """One range per pod across concurrent invocations: an flock'd JSON registry of
    ``{pod uuid: shift}``, root-only, in ``<dir>/private/userns``."""

    def __init__(self, private: Path, etc: Path = Path("/etc"), proc: Path = Path("/proc")) -> None:
        self.path = private / "userns" / "ranges.json"
        self.etc, self.proc = etc, proc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, int]]:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                used = json.loads(self.path.read_text())
            except FileNotFoundError:
                used = {}
            except ValueError as exc:
                raise LocalStateError(
                    f"{self.path} is corrupt: {exc}",
                    hint="remove it once no pod with --private-users runs",
                ) from exc
            if not isinstance(used, dict) or not all(isinstance(v, int) for v in used.values()):
                raise LocalStateError(f"{self.path} is not a map of pod UUIDs to uid shifts")
            before = dict(used)
            yield used
            if used != before:  # only a change is written
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(used, sort_keys=True))
                tmp.chmod(0o600)
                tmp.replace(self.path)
        finally:
            os.close(fd)

    def allocate(self, pod: str) -> int:
        """The pod's shift (the same on a second call): a random free multiple of 65536."""
        import secrets  # noqa: PLC0415 - only for this allocation (issue #14)

        with self._locked() as used:
            if pod in used:
                return used[pod]
            taken = {s // RANGE for s in used.values()} | _blocks(_ids_in_use(self.etc))
            taken |= _blocks(_live_mappings(self.proc))  # other data dirs, runtimes
            free = [b for b in range(_FIRST_BLOCK, _LAST_BLOCK) if b not in taken]
            if not free:
                raise LocalStateError(
                    "no free 65536-wide uid range for --private-users",
                    hint="remove exited pods (rkt gc) to release their ranges",
                )
            used[pod] = RANGE * secrets.choice(free)
            return used[pod]

    def release(self, pod: str) -> None:
        self.release_all((pod,))

    def release_all(self, pods: Iterable[str]) -> None:
        """Give back every range of ``pods``: one lock and at most one write (``rkt gc``);
        nothing at all where no range was ever allocated."""
        if not self.path.exists():
            return
        with self._locked() as used:
            for pod in pods:
                used.pop(pod, None)

    def in_use(self) -> dict[str, int]:
        with self._locked() as used:
            return dict(used)


def make_userns(shift: int) -> int:
    """A new user namespace mapping 0..65535 to shift..shift+65535 (uids and gids); an fd
    on it (close-on-exec). Call it in the host PID namespace (it reads /proc/CHILD).
    Refused while another live user namespace maps any id of the range (:func:`check_unshared`):
    the registry that allocated it covers one data dir only."""
    check_unshared(shift)
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only unshares and waits
        code = 1
        try:
            os.close(ready_r)
            os.close(go_w)
            code = 0 if _libc.unshare(CLONE_NEWUSER) == 0 else 1
            os.write(ready_w, b"1" if code == 0 else b"0")
            os.read(go_r, 1)
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(go_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise PolicyViolationError(
                "--private-users: cannot create a user namespace",
                hint="check user.max_user_namespaces (sysctl), or run without --private-users",
            )
        line = f"0 {shift} {RANGE}\n".encode()
        for name in ("uid_map", "gid_map"):
            fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(go_w)  # the child reads EOF and exits; the namespace lives on in our fd
        os.waitpid(pid, 0)


def _sys(number: int, *args: object, what: str) -> int:
    result = int(_libc.syscall(number, *args))
    if result < 0:
        err = ctypes.get_errno()
        raise PolicyViolationError(
            f"--private-users: {what} failed: {os.strerror(err)}; trustd maps a pod's root "
            "with an idmapped mount and never falls back to chowning it",
            hint=_FIX,
        )
    return result


def idmapped_bind(source: Path, target: Path, userns_fd: int) -> None:
    """Attach at ``target`` an idmapped clone of ``source`` (one filesystem, no submounts),
    seen through ``userns_fd``'s mapping: on-disk uid N shows as shift + N."""
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    tree = _sys(
        SYS_OPEN_TREE,
        -100,  # AT_FDCWD
        os.fsencode(source),
        ctypes.c_uint(OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC),
        what=f"open_tree({source})",
    )
    try:
        attr = _MountAttr(MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
        _sys(
            SYS_MOUNT_SETATTR,
            tree,
            b"",
            ctypes.c_uint(AT_EMPTY_PATH),
            ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)),
            what=f"mount_setattr(MOUNT_ATTR_IDMAP) on {source}",
        )
        _sys(
            SYS_MOVE_MOUNT,
            tree,
            b"",
            -100,
            os.fsencode(target),
            ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH),
            what=f"move_mount onto {target}",
        )
    finally:
        os.close(tree)


def map_lower(rootfs: Path, layer: Path, userns_fd: int, shift: int) -> Path:
    """The app's lower layer as the pod sees it (idmapped at ``layer/lower``); the upper
    layer stays a plain directory, so what the pod writes is owned by shift + N on disk.
    The upper's own root takes the image root's owner and mode, mapped."""
    lower = layer / "lower"
    idmapped_bind(rootfs, lower, userns_fd)
    upper = layer / "upper"
    st = lower.stat()
    os.chown(upper, st.st_uid, st.st_gid)  # already shifted: seen through the idmapped mount
    upper.chmod(st.st_mode & 0o7777)
    return lower


def enter(userns_fd: int) -> None:
    """Join the pod's user namespace as its root (host ``shift``): the caller's mounts and
    root are already in place; what follows (the app's user, capabilities, seccomp)
    happens inside."""
    if _libc.syscall(308, userns_fd, CLONE_NEWUSER) != 0:  # SYS_setns
        err = ctypes.get_errno()
        raise OSError(err, f"setns(user namespace): {os.strerror(err)}")
    os.close(userns_fd)
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)

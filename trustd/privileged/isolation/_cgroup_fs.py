"""The I/O adapter under :mod:`.cgroups`: cgroupfs files and layout detection.

:class:`CgroupFs` is the whole surface the pod cgroup code touches. On a real host it is
plain syscalls; a test may pass a subclass that plays the kernel over a tree in ``tmp_path``
(only for what cannot exist here, such as a cgroup2 hierarchy with controllers).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from trustd.shared.errors import LocalStateError, PolicyViolationError

V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "cpuset", "pids", "devices", "freezer", "blkio")
_MAX_READ = 1 << 20  # cgroup.procs of a pod: far below a mebibyte


class CgroupFs:
    """cgroupfs through plain syscalls. Writes never create files: cgroupfs makes them."""

    def mkdir(self, path: Path) -> None:
        path.mkdir(mode=0o755)

    def rmdir(self, path: Path) -> None:
        path.rmdir()

    def write(self, path: Path, text: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def read(self, path: Path) -> str:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            chunks: list[bytes] = []
            size = 0
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
                size += len(chunk)
                if size > _MAX_READ:
                    raise LocalStateError(f"cgroups: {path} is larger than {_MAX_READ} bytes")
            return b"".join(chunks).decode("ascii", errors="replace")
        finally:
            os.close(fd)

    def exists(self, path: Path) -> bool:
        return path.exists()

    def children(self, path: Path) -> list[str]:
        """The names of the groups directly under ``path`` (none when it is missing)."""
        try:
            with os.scandir(path) as entries:
                return [e.name for e in entries if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return []


KERNEL = CgroupFs()


@dataclass(frozen=True)
class Layout:
    """Where the cgroup hierarchies of this host are mounted.

    ``v2_only`` is a pure cgroup2 host (``root`` itself is the cgroup2 mount). Otherwise
    ``v1`` maps each mounted v1 controller to its hierarchy's mount, and ``unified`` is the
    hybrid host's controller-less cgroup2 mount (tracking, ``cgroup.kill``), if any.
    """

    root: Path
    v2_only: bool
    v1: tuple[tuple[str, Path], ...]
    unified: Path | None
    v2_controllers: frozenset[str]

    def v1_mount(self, controller: str) -> Path | None:
        return dict(self.v1).get(controller)


def detect_layout(root: Path, fs: CgroupFs) -> Layout:
    """The layout under ``root``, read from the filesystem (cgroupfs files mark each mount)."""
    if fs.exists(root / "cgroup.controllers"):
        return Layout(root, True, (), root, _controllers(fs, root))
    v1 = tuple(
        (name, (root / name).resolve())
        for name in V1_CONTROLLERS
        if fs.exists(root / name / "cgroup.procs")
    )
    unified: Path | None = root / "unified"
    if not fs.exists(root / "unified" / "cgroup.controllers"):
        unified = None
    if not v1 and unified is None:
        raise PolicyViolationError(
            f"cgroups: no cgroup hierarchy is mounted under {root}",
            hint="mount cgroup2 (or the v1 controllers) under /sys/fs/cgroup; "
            "pods are not run without resource control",
        )
    controllers = _controllers(fs, unified) if unified else frozenset()
    return Layout(root, False, v1, unified, controllers)


def _controllers(fs: CgroupFs, group: Path) -> frozenset[str]:
    return frozenset(read_file(fs, group / "cgroup.controllers").split())


def read_file(fs: CgroupFs, path: Path) -> str:
    """Read a cgroup file; an unreadable one is local state gone wrong."""
    try:
        return fs.read(path)
    except OSError as exc:
        raise unreadable(path, exc) from exc


def unreadable(path: Path, exc: OSError) -> LocalStateError:
    return LocalStateError(
        f"cgroups: cannot read {path}: {exc.strerror or exc}",
        hint="check that cgroupfs is mounted and that this runs as root",
    )


def refused(
    controller: str, path: Path, what: str, exc: OSError, value: str | None = None
) -> PolicyViolationError:
    """The error for a limit or placement the kernel would not take (fail closed)."""
    written = "" if value is None else f"{value!r} in "
    return PolicyViolationError(
        f"cgroups: cannot {what}: the {controller} controller refused {written}{path}: "
        f"{exc.strerror or exc}",
        hint="the pod is not run without its limits; check the value, that the controller "
        "is enabled, and that this runs as root",
    )


def write_file(fs: CgroupFs, controller: str, path: Path, value: str, what: str) -> None:
    """Write one cgroup file, failing closed with the controller and the file named."""
    try:
        fs.write(path, value)
    except OSError as exc:
        raise refused(controller, path, what, exc, value) from exc


def field_value(text: str, key: str) -> int | None:
    """The number after ``key`` in a ``key value`` per line file (memory.events, oom_control)."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key and parts[1].isdigit():
            return int(parts[1])
    return None

"""An app's root filesystem inside the pod's mount namespace (container flavor).

overlay(lower = the rendered tree, upper = the pod's own layer), then /proc, a read-only
/sys, a minimal /dev on tmpfs, and rkt's masked and read-only paths (disabled only with
``--insecure-options=paths``, and then recorded).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from trustd.privileged.executor._linux import (
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REMOUNT,
    bind,
    mount,
)

DEVICES = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)
# rkt/runc's masked paths (bind /dev/null or an empty tmpfs over them) and read-only ones.
MASKED = (
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/latency_stats",
    "/proc/timer_stats",
    "/sys/firmware",
    "/proc/scsi",
    "/proc/acpi",
)
READ_ONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/asound")


def _inside(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def _mkdir(path: Path) -> None:
    if path.is_symlink():
        raise OSError(f"{path} is a symlink in the image; refusing to mount over it")
    path.mkdir(parents=True, exist_ok=True)


def overlay(lower: Path, upper: Path, work: Path, target: Path, *, readonly: bool) -> None:
    for d in (upper, work, target):
        d.mkdir(parents=True, exist_ok=True)
    mount(
        "overlay",
        str(target),
        "overlay",
        MS_NODEV | (MS_RDONLY if readonly else 0),  # device nodes only in the pod's own /dev
        f"lowerdir={lower},upperdir={upper},workdir={work}",
    )


def private_copy(tree: Path, copy: Path, target: Path) -> None:
    """--no-overlay: copy the rendered tree (owners, modes, links, xattrs kept; never
    following a link) into the pod's private layer and bind it at ``target``."""
    import shutil  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    target.mkdir(parents=True, exist_ok=True)
    if not copy.exists():  # run-prepared after prepare: copied once
        staging = copy.with_name(copy.name + ".tmp")
        if staging.exists():
            shutil.rmtree(staging)
        subprocess.run(  # noqa: S603 - fixed argv, no shell; paths are root's own
            ["/bin/cp", "-a", "--no-dereference", "--", str(tree), str(staging)], check=True
        )
        staging.rename(copy)
    bind(str(copy), str(target))
    mount(None, str(target), None, MS_REMOUNT | MS_BIND | MS_NODEV)  # no device nodes


def kernel_filesystems(root: Path) -> None:
    _mkdir(_inside(root, "/proc"))
    mount("proc", str(_inside(root, "/proc")), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mkdir(_inside(root, "/sys"))
    mount(
        "sysfs", str(_inside(root, "/sys")), "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    )
    dev = _inside(root, "/dev")
    _mkdir(dev)
    mount("tmpfs", str(dev), "tmpfs", MS_NOSUID, "mode=755,size=64k")
    for name, major, minor in DEVICES:
        os.mknod(dev / name, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        (dev / name).chmod(0o666)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        (dev / name).symlink_to(target)
    for sub, opts in (("pts", "newinstance,ptmxmode=0666,mode=620"), ("shm", "mode=1777")):
        (dev / sub).mkdir()
        mount(
            sub if sub == "shm" else "devpts",
            str(dev / sub),
            "tmpfs" if sub == "shm" else "devpts",
            MS_NOSUID | MS_NOEXEC,
            opts,
        )


def protect_paths(root: Path) -> None:
    for path in MASKED:
        where = _inside(root, path)
        if where.is_dir():
            mount("tmpfs", str(where), "tmpfs", MS_RDONLY, "size=0")
        elif where.exists():
            bind("/dev/null", str(where))
    for path in READ_ONLY:
        where = _inside(root, path)
        if where.exists():
            bind(str(where), str(where), readonly=True, recursive=True)


def remount_readonly(target: Path) -> None:
    mount(None, str(target), None, MS_REMOUNT | MS_RDONLY)

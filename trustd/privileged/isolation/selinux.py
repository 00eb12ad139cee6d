"""SELinux svirt labelling for pods (rkt's ``-Z``/``-L`` to systemd-nspawn, done here).

Labels come from ``/etc/selinux/<type>/contexts/lxc_contexts`` (``process``, ``file``,
``ro_file``) with a per-pod MCS category pair ``s0:cX,cY`` (0 <= X < Y < 1024). rkt kept
the pairs in memory, so two concurrent ``rkt`` invocations could pick the same one; here
they are allocated under an flock in ``<data-dir>/selinux/mcs.json`` and released when the
pod is removed. Files get the ``security.selinux`` xattr; the app's process label is set with
``setexeccon`` semantics (``/proc/self/attr/exec``) right before exec.

This machine's kernel has no SELinux LSM: the allocation and the file labels are exercised
here (root may set ``security.*`` xattrs without an LSM), the process label is not; the mode
decides what happens then (``enforce`` refuses, ``permissive`` records the gap, ``off``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from trustd.shared._dataclass import frozen
from trustd.shared.errors import LocalStateError, PolicyViolationError
from trustd.shared.vocab import SelinuxMode

Mode = SelinuxMode
XATTR = "security.selinux"
MAX_CATEGORY = 1024
_LINE = re.compile(r'^\s*(process|file|ro_file|content)\s*=\s*"?([^"#\s]+)"?\s*$')


def selinux_enabled(root: Path = Path("/")) -> bool:
    """The kernel has SELinux loaded (selinuxfs mounted, as libselinux checks)."""
    return (root / "sys/fs/selinux/enforce").exists()


def policy_type(root: Path = Path("/")) -> str:
    config = root / "etc/selinux/config"
    if config.is_file():
        for line in config.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "SELINUXTYPE" and value.strip():
                return value.strip()
    return "targeted"


@frozen
class LxcContexts:
    process: str
    file: str
    ro_file: str

    @classmethod
    def load(cls, root: Path = Path("/")) -> LxcContexts:
        path = root / "etc/selinux" / policy_type(root) / "contexts/lxc_contexts"
        try:
            found = {
                m.group(1): m.group(2)
                for line in path.read_text().splitlines()
                if (m := _LINE.match(line))
            }
            return cls(found["process"], found["file"], found.get("ro_file", found["file"]))
        except (OSError, KeyError) as exc:
            raise PolicyViolationError(
                f"no usable SELinux lxc_contexts at {path}: {exc}",
                hint="install the SELinux policy, or set selinux = off",
            ) from exc


def with_mcs(context: str, pair: tuple[int, int]) -> str:
    """``user:role:type:s0`` (any level) -> ``user:role:type:s0:cX,cY``."""
    base = ":".join(context.split(":")[:4]) if context.count(":") >= 3 else context
    return f"{base}:c{pair[0]},c{pair[1]}"


@frozen
class PodLabels:
    mode: Mode
    process: str
    file: str
    pair: tuple[int, int]


class McsAllocator:
    """Unique MCS pairs across concurrent invocations: an flock'd JSON registry."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "selinux" / "mcs.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, list[int]]]:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                used: dict[str, list[int]] = json.loads(self.path.read_text())
            except FileNotFoundError:
                used = {}
            except ValueError as exc:
                raise LocalStateError(f"{self.path} is corrupt: {exc}") from exc
            before = dict(used)
            yield used
            if used != before:  # only a change is written
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(used))
                tmp.replace(self.path)
        finally:
            os.close(fd)

    def allocate(self, pod: str) -> tuple[int, int]:
        import secrets  # noqa: PLC0415 - only for this allocation (issue #14)

        with self._locked() as used:
            if pod in used:
                return (used[pod][0], used[pod][1])
            taken = {tuple(p) for p in used.values()}
            if len(taken) >= MAX_CATEGORY * (MAX_CATEGORY - 1) // 2:  # pragma: no cover
                raise LocalStateError("every SELinux MCS pair is in use")
            while True:
                x, y = sorted(secrets.randbelow(MAX_CATEGORY) for _ in range(2))
                if x != y and (x, y) not in taken:
                    used[pod] = [x, y]
                    return (x, y)

    def release(self, pod: str) -> None:
        self.release_all((pod,))

    def release_all(self, pods: Iterable[str]) -> None:
        """Give back every pair of ``pods``: one lock and at most one write (``rkt gc``);
        nothing at all where no pair was ever allocated."""
        if not self.path.exists():
            return
        with self._locked() as used:
            for pod in pods:
                used.pop(pod, None)

    def in_use(self) -> dict[str, tuple[int, int]]:
        with self._locked() as used:
            return {k: (v[0], v[1]) for k, v in used.items()}


def pod_labels(mode: Mode, pod: str, data_dir: Path, root: Path = Path("/")) -> PodLabels | None:
    """Allocate this pod's labels, or decide per mode when the host has no SELinux."""
    if mode == "off":
        return None
    if not selinux_enabled(root):
        if mode == "enforce":
            raise PolicyViolationError(
                "the policy requires SELinux (enforce) but this kernel has no SELinux loaded",
                hint="run on an SELinux host, or set selinux = permissive for this scope",
            )
        return None  # permissive: the caller records the gap
    contexts = LxcContexts.load(root)
    pair = McsAllocator(data_dir).allocate(pod)
    return PodLabels(mode, with_mcs(contexts.process, pair), with_mcs(contexts.file, pair), pair)


def label_tree(path: Path, context: str) -> int:
    """Set ``security.selinux`` on ``path`` and everything below it (not following links)."""
    count = 0
    value = context.encode()
    for current in [path, *path.rglob("*")]:
        try:
            os.setxattr(current, XATTR, value, follow_symlinks=False)
        except OSError as exc:
            raise PolicyViolationError(f"cannot label {current}: {exc.strerror}") from exc
        count += 1
    return count


def set_exec_label(context: str) -> None:
    """setexeccon(3): the label the next execve() gives this process."""
    try:
        Path("/proc/self/attr/exec").write_text(context)
    except OSError as exc:
        raise PolicyViolationError(
            f"cannot set the SELinux process label {context}: {exc.strerror}",
            hint="the app was not started",
        ) from exc

"""Docker-format seccomp profiles (moby, containers/common) as typed filter descriptions.

``trustd.shared.isolation.seccomp.SeccompSpec`` is one retain- or remove-set with a single errno: it
cannot say "allow ``personality`` only when arg 0 == 8" or "``socket`` fails with EINVAL
when arg 0 == 40". So profiles resolve to our own :class:`SyscallFilter`: the default
action and errno, then per-syscall rules with their action, errno and argument conditions,
for one architecture and one capability set. The executor turns that into
``trustd.shared.isolation.seccomp_profile.ProfileSpec``, which the app's process loads rule by rule
with libseccomp (``rkt run --seccomp=profile=NAME``).

A profile is a third-party document: unknown keys are tolerated, but every key we use is
type-checked, and any problem is one :class:`SeccompProfileError` naming file and field.
"""

from __future__ import annotations

import errno as errno_mod
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast, get_args

from trustd.shared._dataclass import frozen
from trustd.shared.errors import LocalStateError

Action = Literal[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
]
Op = Literal[
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
]
MAX_PROFILE_BYTES = 1 << 20
# Go's GOARCH names, as moby's profiles use them.
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "armv7l": "arm"}


class SeccompProfileError(LocalStateError):
    """A Docker-format seccomp profile that cannot be used."""


@frozen
class ArgCondition:
    index: int
    op: Op
    value: int
    value_two: int = 0


@frozen
class Selector:
    arches: tuple[str, ...] = ()
    caps: tuple[str, ...] = ()
    min_kernel: str = ""


@frozen
class ProfileRule:
    names: tuple[str, ...]
    action: Action
    errno: int | None
    args: tuple[ArgCondition, ...]
    includes: Selector
    excludes: Selector


@frozen
class DockerProfile:
    source: str
    digest: str  # sha256-<hex> of the file's bytes: what a policy names
    default_action: Action
    default_errno: int | None
    rules: tuple[ProfileRule, ...]


@frozen
class FilterRule:
    name: str
    action: Action
    errno: int | None
    args: tuple[ArgCondition, ...]


@frozen
class SyscallFilter:
    """A profile resolved for one arch and capability set: what the kernel filter must do."""

    arch: str
    default_action: Action
    default_errno: int | None
    rules: tuple[FilterRule, ...]

    @property
    def allowed(self) -> frozenset[str]:
        """Syscalls allowed with no argument condition (the allow-list)."""
        return frozenset(r.name for r in self.rules if r.action == "SCMP_ACT_ALLOW" and not r.args)

    @property
    def denied(self) -> frozenset[str]:
        """Syscalls refused unconditionally (the deny-list)."""
        return frozenset(r.name for r in self.rules if r.action != "SCMP_ACT_ALLOW" and not r.args)

    @property
    def conditional(self) -> tuple[FilterRule, ...]:
        return tuple(r for r in self.rules if r.args)


class _Bad(Exception):
    pass


def _require(ok: bool, problem: str) -> None:
    if not ok:
        raise _Bad(problem)


def _get(obj: Mapping[str, Any], key: str, kind: type, default: Any = None) -> Any:
    value = obj.get(key, default)
    if value is None:
        return default
    if kind is int and type(value) is not int:
        raise _Bad(f"{key}: expected an integer")
    if not isinstance(value, kind):
        raise _Bad(f"{key}: expected {kind.__name__}")
    return value


def _strings(obj: Mapping[str, Any], key: str) -> tuple[str, ...]:
    items = _get(obj, key, list, [])
    if not all(isinstance(i, str) for i in items):
        raise _Bad(f"{key}: expected a list of strings")
    return tuple(items)


def _action(value: Any, where: str) -> Action:
    if value not in get_args(Action):
        raise _Bad(f"{where}: unknown action {value!r}")
    return cast(Action, value)


def _errno(obj: Mapping[str, Any], num_key: str, name_key: str) -> int | None:
    num = _get(obj, num_key, int)
    if num is not None:
        if not 0 <= num <= 4095:
            raise _Bad(f"{num_key}: {num} is not an errno")
        return int(num)
    name = _get(obj, name_key, str)
    if name is None:
        return None
    value = getattr(errno_mod, name, None)
    if not isinstance(value, int):
        raise _Bad(f"{name_key}: unknown errno {name!r}")
    return value


def _selector(obj: Mapping[str, Any]) -> Selector:
    return Selector(_strings(obj, "arches"), _strings(obj, "caps"), _get(obj, "minKernel", str, ""))


def _arg(obj: Any, where: str) -> ArgCondition:
    if not isinstance(obj, dict):
        raise _Bad(f"{where}: expected an object")
    op = obj.get("op")
    if op not in get_args(Op):
        raise _Bad(f"{where}.op: unknown operator {op!r}")
    index = _get(obj, "index", int)
    if index is None or not 0 <= index <= 5:
        raise _Bad(f"{where}.index: must be 0..5")
    value, two = _get(obj, "value", int, 0), _get(obj, "valueTwo", int, 0)
    if not (0 <= value < 1 << 64 and 0 <= two < 1 << 64):
        raise _Bad(f"{where}: values must be unsigned 64-bit")
    return ArgCondition(index, cast(Op, op), value, two)


def _rule(obj: Any, i: int) -> ProfileRule:
    where = f"syscalls[{i}]"
    if not isinstance(obj, dict):
        raise _Bad(f"{where}: expected an object")
    try:
        names = _strings(obj, "names")
        if not names and isinstance(obj.get("name"), str):
            names = (obj["name"],)
        _require(bool(names), "names: must not be empty")
        args = _get(obj, "args", list, [])
        return ProfileRule(
            names=names,
            action=_action(obj.get("action"), "action"),
            errno=_errno(obj, "errnoRet", "errno"),
            args=tuple(_arg(a, f"args[{j}]") for j, a in enumerate(args)),
            includes=_selector(_get(obj, "includes", dict, {})),
            excludes=_selector(_get(obj, "excludes", dict, {})),
        )
    except _Bad as exc:
        raise _Bad(f"{where}.{exc}") from exc


def parse_profile(data: bytes, source: str) -> DockerProfile:
    digest = "sha256-" + hashlib.sha256(data).hexdigest()
    try:
        doc = json.loads(data)
        _require(isinstance(doc, dict), "the profile must be a JSON object")
        rules = tuple(_rule(r, i) for i, r in enumerate(_get(doc, "syscalls", list, [])))
        return DockerProfile(
            source=source,
            digest=digest,
            default_action=_action(doc.get("defaultAction"), "defaultAction"),
            default_errno=_errno(doc, "defaultErrnoRet", "defaultErrno"),
            rules=rules,
        )
    except (_Bad, ValueError, RecursionError) as exc:
        raise SeccompProfileError(
            f"seccomp profile {source}: {exc}",
            hint="use a Docker-format profile (defaultAction, syscalls[].names/action)",
        ) from exc


def load_profile(path: Path) -> DockerProfile:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_PROFILE_BYTES + 1)
    except OSError as exc:
        raise SeccompProfileError(f"seccomp profile {path}: cannot read: {exc.strerror}") from exc
    if len(data) > MAX_PROFILE_BYTES:
        raise SeccompProfileError(f"seccomp profile {path}: larger than {MAX_PROFILE_BYTES} bytes")
    return parse_profile(data, str(path))


def native_arch() -> str:
    machine = os.uname().machine  # platform.machine(), without importing platform
    return _GOARCH.get(machine, machine)


def _kernel_at_least(minimum: str, kernel: tuple[int, int] | None) -> bool:
    if not minimum:
        return True
    if kernel is None:
        return False
    major, _, minor = minimum.partition(".")
    return kernel >= (int(major), int(minor or 0))


def _applies(
    rule: ProfileRule, arch: str, caps: frozenset[str], kernel: tuple[int, int] | None
) -> bool:
    inc, exc = rule.includes, rule.excludes
    if inc.arches and arch not in inc.arches:
        return False
    if inc.caps and not set(inc.caps) <= caps:
        return False
    if not _kernel_at_least(inc.min_kernel, kernel):
        return False
    if arch in exc.arches or set(exc.caps) & caps:
        return False
    return not (exc.min_kernel and _kernel_at_least(exc.min_kernel, kernel))


def resolve(
    profile: DockerProfile,
    *,
    arch: str,
    caps: frozenset[str],
    kernel: tuple[int, int] | None,
) -> SyscallFilter:
    """moby's rule selection: includes need every listed cap/arch, excludes drop on any."""
    rules = tuple(
        FilterRule(name, r.action, r.errno if r.errno is not None else _implied(r, profile), r.args)
        for r in profile.rules
        if _applies(r, arch, caps, kernel)
        for name in r.names
    )
    return SyscallFilter(arch, profile.default_action, profile.default_errno, rules)


def _implied(rule: ProfileRule, profile: DockerProfile) -> int | None:
    return profile.default_errno if rule.action == "SCMP_ACT_ERRNO" else None

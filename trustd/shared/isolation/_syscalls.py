"""The one adapter over pyseccomp (libseccomp): syscall name resolution and filter loading.

pyseccomp is imported with this module, but a host without ``libseccomp.so.2`` can still import
:mod:`trustd.shared.isolation`; using seccomp there raises :class:`PolicyViolationError`
(fail closed).
"""

from __future__ import annotations

import enum
import importlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType

from trustd.shared.errors import PolicyViolationError

# libseccomp returns __NR_SCMP_ERROR (-1) for a name it has never heard of, and a negative
# pseudo-number (<= -10000) for a syscall it knows but that does not exist on this arch.
_NR_SCMP_ERROR = -1
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")


class Known(enum.Enum):
    NATIVE = "native"  # exists on this architecture
    FOREIGN = "foreign"  # in libseccomp's table, but not on this architecture
    UNKNOWN = "unknown"  # no such syscall anywhere


# The sonames pyseccomp asks ``ctypes.util.find_library`` for. On Linux that runs
# ``/sbin/ldconfig -p`` (a fork and exec per name, twice per pod start: issue #14) and returns
# the soname, which ``dlopen`` then resolves through the loader's cache, as it does here.
_SONAMES = {"c": "libc.so.6", "seccomp": "libseccomp.so.2"}


def _import() -> tuple[ModuleType | None, str]:
    import ctypes.util  # noqa: PLC0415

    find = ctypes.util.find_library
    ctypes.util.find_library = lambda name: _SONAMES.get(name) or find(name)
    try:
        return importlib.import_module("pyseccomp"), ""
    except (ImportError, OSError) as exc:
        return None, str(exc)
    finally:
        ctypes.util.find_library = find


# Imported with the package, not on first use: the executor's child calls apply_seccomp after
# pivot_root into the app's rootfs, where neither pyseccomp nor libseccomp.so can be found.
_LIB, _LIB_ERROR = _import()


def _lib() -> ModuleType:
    if _LIB is None:
        raise PolicyViolationError(
            f"seccomp is unavailable: {_LIB_ERROR}",
            hint="install libseccomp2 and the pyseccomp package",
        )
    return _LIB


def classify(name: str) -> Known:
    """Whether ``name`` is a syscall on this architecture, on another one only, or nowhere."""
    if not _NAME.fullmatch(name):  # also keeps NUL bytes away from C
        return Known.UNKNOWN
    lib = _lib()
    nr = int(lib.resolve_syscall(lib.Arch.NATIVE, name))
    if nr >= 0:
        return Known.NATIVE
    return Known.UNKNOWN if nr == _NR_SCMP_ERROR else Known.FOREIGN


def native(names: Iterable[str]) -> frozenset[str]:
    """The subset of ``names`` that exist on this architecture."""
    return frozenset(n for n in names if classify(n) is Known.NATIVE)


@dataclass(frozen=True)
class Action:
    """A seccomp action: allow, kill the process or thread (SIGSYS), trap, log, trace, or fail
    with an errno."""

    kind: str  # "allow" | "kill" | "kill_thread" | "trap" | "log" | "trace" | "errno"
    errno: int = 0

    def raw(self) -> int:
        lib = _lib()
        simple = {
            "allow": lib.ALLOW,
            "kill": lib.KILL_PROCESS,
            "kill_thread": lib.KILL_THREAD,
            "trap": lib.TRAP,
            "log": lib.LOG,
        }
        if self.kind in simple:
            return int(simple[self.kind])
        if self.kind == "trace":
            return int(lib.TRACE(self.errno))
        if self.kind == "errno":
            return int(lib.ERRNO(self.errno))
        raise ValueError(f"unknown seccomp action {self.kind!r}")


ALLOW = Action("allow")
KILL = Action("kill")

# libseccomp's comparison operators, by the names Docker-format profiles use.
CMP_OPS: tuple[str, ...] = (
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
)


@dataclass(frozen=True)
class ArgCmp:
    """``arg[index] <op> value``; for MASKED_EQ: ``arg[index] & value == value_two``."""

    index: int
    op: str  # one of CMP_OPS
    value: int
    value_two: int = 0

    def raw(self) -> object:
        lib = _lib()
        if self.op not in CMP_OPS or not 0 <= self.index <= 5:
            raise ValueError(f"invalid seccomp argument comparison {self}")
        op = getattr(lib, self.op.removeprefix("SCMP_CMP_"))
        return lib.Arg(self.index, op, self.value, self.value_two)


Rule = tuple[Action, str] | tuple[Action, str, Sequence[ArgCmp]]


def errno_action(value: int | None) -> Action:
    """The refusal action: ``None`` kills the process with SIGSYS, a number fails with it."""
    return KILL if value is None else Action("errno", value)


def load_filter(default: Action, rules: Iterable[Rule], *, no_new_privs: bool = True) -> None:
    """Build a filter for the native architecture and load it into the calling process.

    A rule is ``(action, name)`` or ``(action, name, comparisons)``; a rule with comparisons
    applies only when all of them hold. Foreign ABIs (x32, i386 via ``int 0x80``) hit the
    bad-arch action, which kills the process. All threads are synchronised (TSYNC); libseccomp
    sets ``no_new_privs`` as well, unless ``no_new_privs=False`` (then the caller must hold
    CAP_SYS_ADMIN). Raises OSError or ValueError from libseccomp; callers fail closed.
    """
    lib = _lib()
    flt = lib.SyscallFilter(default.raw())
    flt.set_attr(lib.Attr.ACT_BADARCH, lib.KILL_PROCESS)
    flt.set_attr(lib.Attr.CTL_NNP, 1 if no_new_privs else 0)
    flt.set_attr(lib.Attr.CTL_TSYNC, 1)
    for rule in rules:
        action, name = rule[0], rule[1]
        args = rule[2] if len(rule) == 3 else ()
        flt.add_rule(action.raw(), name, *(a.raw() for a in args))
    flt.load()

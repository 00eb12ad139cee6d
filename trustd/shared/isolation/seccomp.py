"""Seccomp for an app: appc isolators and rkt's ``--seccomp``, turned into one filter.

Semantics follow rkt (``stage1/init/common/seccomp.go``) and the appc spec:

* ``retain`` (allow-list): listed syscalls run, every other one is refused.
  ``remove`` (deny-list): listed syscalls are refused, every other one runs.
* A refused syscall kills the whole process with ``SIGSYS`` unless an ``errno`` is given
  (``"ENOTSUP"``); then it fails with that errno instead. This is the default of *both* modes.
* ``@appc.io/all`` in a retain-set opts out: nothing is refused (modelled as a remove-set with
  nothing in it). ``@appc.io/empty`` opts in to rkt's default (retain
  ``@rkt/default-whitelist``), keeping the given errno. ``@appc.io/all`` in a remove-set would
  refuse every syscall; it is refused as a UserError rather than guessed at.
* No isolator at all: :func:`default_spec`, rkt's default whitelist.

One deviation, for programs built on current glibc: in retain mode a few syscalls that libc
probes and falls back from (``rseq``, ``clone3``, ``statx``, …; see ``ENOSYS_FALLBACK``) fail
with ``ENOSYS`` when not retained, instead of killing. rkt's 2017 whitelist lacks them, and
glibc >= 2.35 calls ``rseq`` at every program start, so without this every exec would die.
They are still refused; only the way they are refused differs. The set is part of the digest.
"""

from __future__ import annotations

import errno as errno_mod
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from trustd.shared.errors import PolicyViolationError, UserError
from trustd.shared.isolation import _seccomp_sets, _syscalls
from trustd.shared.isolation.nnp import set_no_new_privs
from trustd.shared.isolation.seccomp_profile import ProfileSpec, apply_profile

SeccompMode = Literal["retain", "remove"]

RETAIN_SET = "os/linux/seccomp-retain-set"
REMOVE_SET = "os/linux/seccomp-remove-set"
_ISOLATOR_MODE: dict[str, SeccompMode] = {RETAIN_SET: "retain", REMOVE_SET: "remove"}

ENOSYS_FALLBACK: tuple[str, ...] = (
    "rseq",
    "clone3",
    "statx",
    "faccessat2",
    "close_range",
    "openat2",
    "epoll_pwait2",
    "fchmodat2",
    "preadv2",
    "pwritev2",
    "pidfd_open",
    "pidfd_send_signal",
    "membarrier",
)
_DIGEST_VERSION = 1
_MAX_ERRNO = 4095
_ERRNO_NAME = re.compile(r"E[A-Z0-9]+")
_ERRNOS: dict[str, int] = {
    n: v for n, v in vars(errno_mod).items() if _ERRNO_NAME.fullmatch(n) and isinstance(v, int)
}


@dataclass(frozen=True)
class SeccompSpec:
    """One app's seccomp filter: what to refuse and how.

    ``syscalls`` holds expanded names that exist on this architecture; ``errno`` is the error
    refused syscalls return, or ``None`` to kill the process with SIGSYS (rkt's default);
    ``source`` says where the spec came from, for audit records (not part of the digest).
    """

    mode: SeccompMode
    syscalls: frozenset[str]
    errno: int | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.mode not in get_args(SeccompMode):
            raise UserError(f"invalid seccomp mode {self.mode!r}", hint="use retain or remove")
        if self.errno is not None and not 0 < self.errno <= _MAX_ERRNO:
            raise UserError(f"invalid seccomp errno {self.errno}", hint="use an errno name")

    @property
    def errno_name(self) -> str | None:
        """The errno's symbolic name (``"ENOTSUP"``), or None when refusal kills."""
        return None if self.errno is None else errno_mod.errorcode.get(self.errno, str(self.errno))

    @property
    def refuses_nothing(self) -> bool:
        """True for the ``@appc.io/all`` opt-out: a deny-list with nothing on it."""
        return self.mode == "remove" and not self.syscalls


def default_spec() -> SeccompSpec:
    """rkt's default when an app has no seccomp isolator: retain ``@rkt/default-whitelist``."""
    names = _seccomp_sets.expand([_seccomp_sets.RKT_DEFAULT_WHITELIST])
    return SeccompSpec("retain", names, None, "rkt default: retain @rkt/default-whitelist")


def from_isolator(name: str, value: Mapping[str, object]) -> SeccompSpec:
    """Parse an appc ``os/linux/seccomp-{retain,remove}-set`` value ``{"set": […], "errno": …}``.

    Unknown keys are ignored (the value belongs to a third-party manifest).
    """
    mode = _ISOLATOR_MODE.get(name)
    if mode is None:
        raise UserError(
            f"{name!r} is not a seccomp isolator", hint=f"use {RETAIN_SET} or {REMOVE_SET}"
        )
    if not isinstance(value, Mapping):
        raise UserError(f"isolator {name}: value must be an object with a 'set' list")
    items = value.get("set")
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise UserError(f"isolator {name}: 'set' must be a list of syscall names")
    errno_text = value.get("errno", "")
    if not isinstance(errno_text, str):
        raise UserError(f"isolator {name}: 'errno' must be a string such as \"ENOTSUP\"")
    source = f"isolator {name} {json.dumps(items)}"
    if errno_text:
        source += f" errno={errno_text}"
    return _build(mode, items, _parse_errno(errno_text, f"isolator {name}"), source)


def from_cli(text: str) -> SeccompSpec:
    """Parse rkt's ``--seccomp`` override: ``mode=remove,errno=ENOTSUP,chmod,chown``.

    ``mode=retain|remove`` is required, ``errno=`` optional, every other item is a syscall
    or wildcard. Anything malformed is a UserError.
    """
    mode: str | None = None
    errno_text: str | None = None
    items: list[str] = []
    for raw in text.split(","):
        key, sep, val = raw.partition("=")
        if not sep:
            if not raw:
                raise _cli_error(text, "empty item")
            items.append(raw)
        elif key == "mode" and mode is None:
            mode = val
        elif key == "errno" and errno_text is None:
            errno_text = val
        else:
            raise _cli_error(text, f"unexpected {raw!r}")
    if mode not in _ISOLATOR_MODE.values():
        raise UserError(
            "invalid seccomp mode command-line override",
            hint=f"--seccomp needs mode=retain or mode=remove, got {text!r}",
        )
    checked_mode: SeccompMode = "retain" if mode == "retain" else "remove"
    err = _parse_errno(errno_text or "", "--seccomp")
    return _build(checked_mode, items, err, f"--seccomp {text}")


def _cli_error(text: str, why: str) -> UserError:
    return UserError(
        f"invalid seccomp command-line override: {why}",
        hint=f"example: --seccomp mode=remove,errno=ENOTSUP,chmod (got {text!r})",
    )


def _parse_errno(text: str, where: str) -> int | None:
    if not text:
        return None
    value = _ERRNOS.get(text)
    if value is None or not 0 < value <= _MAX_ERRNO:
        raise UserError(
            f"{where}: unknown errno {text!r}",
            hint="give an errno name in capitals, e.g. EPERM, ENOTSUP, ENOSYS",
        )
    return value


def _build(mode: SeccompMode, items: Sequence[str], err: int | None, source: str) -> SeccompSpec:
    if not items:
        raise UserError(f"{source}: the syscall set is empty", hint="list at least one syscall")
    has_all, has_empty = _seccomp_sets.ALL in items, _seccomp_sets.EMPTY in items
    others = [i for i in items if i not in (_seccomp_sets.ALL, _seccomp_sets.EMPTY)]
    names = _seccomp_sets.expand(others)  # checked even when masked: a typo is still an error
    if has_all and (has_empty or mode == "remove"):
        raise UserError(
            f"{source}: {_seccomp_sets.ALL} only makes sense alone in a retain-set",
            hint=f"to switch filtering off use mode=retain,{_seccomp_sets.ALL}",
        )
    if has_all:
        return SeccompSpec("remove", frozenset(), err, f"{source} (opt-out: nothing refused)")
    if has_empty:
        default = _seccomp_sets.expand([_seccomp_sets.RKT_DEFAULT_WHITELIST])
        return SeccompSpec("retain", default, err, f"{source} (opt-in: rkt default whitelist)")
    return SeccompSpec(mode, names, err, source)


def _enosys_fallback(spec: SeccompSpec) -> frozenset[str]:
    if spec.mode != "retain" or spec.errno == errno_mod.ENOSYS:
        return frozenset()
    return _syscalls.native(ENOSYS_FALLBACK) - spec.syscalls


def spec_digest(spec: SeccompSpec | ProfileSpec) -> str:
    """``sha256-<hex>`` over a canonical JSON of what the filter enforces on this arch; for a
    Docker-format profile, the profile file's digest (what a policy names)."""
    if isinstance(spec, ProfileSpec):
        return spec.digest
    doc = {
        "version": _DIGEST_VERSION,
        "arch": os.uname().machine,
        "mode": spec.mode,
        "syscalls": sorted(spec.syscalls),
        "errno": spec.errno,
        "enosys": sorted(_enosys_fallback(spec)),
    }
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256-" + hashlib.sha256(canonical.encode("ascii")).hexdigest()


def apply_seccomp(spec: SeccompSpec | ProfileSpec, *, no_new_privs: bool = True) -> None:
    """Set ``no_new_privs`` and load ``spec``'s filter into the calling process.

    Called in the child right before exec (also after pivot_root: nothing is imported or read
    from disk here); the filter survives exec. Apply capabilities first. The ``@appc.io/all``
    opt-out still loads a filter (allow everything), so foreign ABIs stay refused and
    ``no_new_privs`` is set, where rkt loaded none. Any failure raises
    :class:`PolicyViolationError` and nothing runs (fail closed). A :class:`ProfileSpec` loads
    its rules with their argument comparisons.

    ``no_new_privs=False`` (an image's ``os/linux/no-new-privileges`` false, allowed by the
    policy) loads the filter without it; the kernel then requires CAP_SYS_ADMIN of the caller.
    """
    if isinstance(spec, ProfileSpec):
        apply_profile(spec, no_new_privs=no_new_privs)
        return
    if no_new_privs:
        set_no_new_privs()
    refuse = _syscalls.errno_action(spec.errno)
    if spec.mode == "retain":
        default = refuse
        rules = [(_syscalls.ALLOW, n) for n in sorted(spec.syscalls)]
        enosys = _syscalls.errno_action(errno_mod.ENOSYS)
        rules += [(enosys, n) for n in sorted(_enosys_fallback(spec))]
    else:
        default = _syscalls.ALLOW
        rules = [(refuse, n) for n in sorted(spec.syscalls)]
    try:
        _syscalls.load_filter(default, rules, no_new_privs=no_new_privs)
    except (OSError, ValueError) as exc:
        raise PolicyViolationError(
            f"cannot load the seccomp filter ({spec.source or spec.mode}): {exc}",
            hint="the app was not started; check the seccomp isolator or --seccomp",
        ) from exc

"""Capabilities for an app: appc isolators and rkt's ``--caps-retain``/``--caps-remove``.

Semantics follow the appc spec and rkt's stage1:

* No capability isolator: the default 14 (:data:`DEFAULT_CAPS`, mask ``a80425fb``).
* ``os/linux/capabilities-retain-set``: exactly the listed capabilities, nothing else.
* ``os/linux/capabilities-remove-set``: the default 14 minus the listed ones (naming one that is
  not in the default set has no effect, but it must still be a real capability).
* Unknown names are a UserError; an empty set is a UserError (appc: "set must be non-empty");
  retain and remove together are a UserError (appc: they cannot be used in conjunction).

:func:`apply_caps` makes the calling process's bounding, effective, permitted and inheritable
sets exactly the requested set and clears the ambient set. A capability the calling process
does not hold itself (CAP_SYS_RESOURCE on the project's machines) cannot be granted: it is
reported in :attr:`AppliedCaps.unavailable`, not raised, so the caller can record it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from trustd.shared.errors import PolicyViolationError, UserError
from trustd.shared.isolation import _libc

# Index = capability number (linux/capability.h).
CAP_NAMES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
_NUMBER = {name: nr for nr, name in enumerate(CAP_NAMES)}

DEFAULT_CAPS: frozenset[str] = frozenset(
    {
        "CAP_AUDIT_WRITE",
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_KILL",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_NET_BIND_SERVICE",
        "CAP_SETUID",
        "CAP_SETGID",
        "CAP_SETPCAP",
        "CAP_SETFCAP",
        "CAP_SYS_CHROOT",
    }
)

RETAIN_SET = "os/linux/capabilities-retain-set"
REMOVE_SET = "os/linux/capabilities-remove-set"


def mask_of(names: Iterable[str]) -> int:
    """The bit mask of capability names (as in ``CapEff`` of /proc/PID/status)."""
    return sum(1 << _NUMBER[n] for n in set(names))


def names_of(mask: int) -> frozenset[str]:
    """The named capabilities set in ``mask`` (bits beyond the table are ignored)."""
    return frozenset(n for nr, n in enumerate(CAP_NAMES) if mask >> nr & 1)


@dataclass(frozen=True)
class CapSet:
    """The capabilities an app runs with; ``source`` says where they came from (for audit)."""

    caps: frozenset[str]
    source: str = ""

    def __post_init__(self) -> None:
        _check_names(self.caps, "capability set")

    @property
    def mask(self) -> int:
        return mask_of(self.caps)

    def sorted_names(self) -> list[str]:
        """Names in capability-number order."""
        return sorted(self.caps, key=_NUMBER.__getitem__)


@dataclass(frozen=True)
class AppliedCaps:
    """What :func:`apply_caps` did: the capabilities now held, and the requested ones that the
    calling process could not give because it did not hold them."""

    granted: frozenset[str]
    unavailable: frozenset[str]


def default_caps() -> CapSet:
    """The appc/rkt default set, used when an app has no capability isolator."""
    return CapSet(DEFAULT_CAPS, "appc default capabilities")


def _check_names(names: Iterable[str], where: str) -> None:
    unknown = sorted(n for n in names if n not in _NUMBER)
    if not unknown:
        return
    guesses = (n.upper() if n.upper().startswith("CAP_") else "CAP_" + n.upper() for n in unknown)
    close = [g for g in guesses if g in _NUMBER]
    hint = f"did you mean {', '.join(close)}?" if close else "names look like CAP_NET_ADMIN"
    raise UserError(f"{where}: unknown capability {', '.join(map(repr, unknown))}", hint=hint)


def _from_set(mode: str, names: list[str], source: str) -> CapSet:
    if not names:
        raise UserError(f"{source}: the capability set is empty", hint="list at least one")
    _check_names(names, source)
    chosen = frozenset(names) if mode == "retain" else DEFAULT_CAPS - frozenset(names)
    return CapSet(chosen, source)


def from_isolator(name: str, value: Mapping[str, object]) -> CapSet:
    """Parse an appc ``os/linux/capabilities-{retain,remove}-set`` value ``{"set": […]}``."""
    modes = {RETAIN_SET: "retain", REMOVE_SET: "remove"}
    if name not in modes:
        raise UserError(
            f"{name!r} is not a capability isolator", hint=f"use {RETAIN_SET} or {REMOVE_SET}"
        )
    items = value.get("set") if isinstance(value, Mapping) else None
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise UserError(f"isolator {name}: 'set' must be a list of capability names")
    return _from_set(modes[name], items, f"isolator {name} {items}")


def from_cli(*, retain: str | None = None, remove: str | None = None) -> CapSet:
    """Parse rkt's ``--caps-retain`` / ``--caps-remove`` comma lists (at most one of them)."""
    if retain is not None and remove is not None:
        raise UserError(
            "--caps-retain and --caps-remove cannot be used together",
            hint="give the full set with --caps-retain, or what to drop with --caps-remove",
        )
    if retain is None and remove is None:
        return default_caps()
    if retain is not None:
        return _from_set("retain", _comma_list(retain), f"--caps-retain={retain}")
    return _from_set("remove", _comma_list(remove or ""), f"--caps-remove={remove}")


def _comma_list(text: str) -> list[str]:
    return [] if not text else text.split(",")


def _cap_last_cap() -> int:
    """Highest capability number this kernel knows."""
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_bytes())
    except (OSError, ValueError):
        nr = 0
        while _bounding_has(nr + 1):
            nr += 1
        return nr


def _bounding_has(nr: int) -> bool:
    try:
        return _libc.prctl(_libc.PR_CAPBSET_READ, nr) == 1
    except OSError:  # EINVAL past the last capability
        return False


def _bounding(last: int) -> int:
    return sum(1 << nr for nr in range(last + 1) if _bounding_has(nr))


def _set_exactly(granted: int, last: int) -> None:
    """Drop everything else from the bounding set, clear ambient, then capset."""
    bounding = _bounding(last)
    for nr in range(last + 1):
        if bounding >> nr & 1 and not granted >> nr & 1:
            _libc.prctl(_libc.PR_CAPBSET_DROP, nr)
    _libc.prctl(_libc.PR_CAP_AMBIENT, _libc.PR_CAP_AMBIENT_CLEAR_ALL)
    _libc.capset(_libc.CapState(granted, granted, granted))


def apply_caps(caps: CapSet) -> AppliedCaps:
    """Make the calling process hold exactly ``caps`` (minus what it does not hold itself).

    Called in the child before :func:`trustd.shared.isolation.seccomp.apply_seccomp`; it imports and
    decodes nothing, so it works after pivot_root into the app's rootfs. Any failure,
    or a read-back that differs from the request, raises :class:`PolicyViolationError`.
    """
    try:
        last = _cap_last_cap()
        held = _bounding(last) & _libc.capget().permitted
        granted = caps.mask & held
        _set_exactly(granted, last)
        now = _libc.capget()
        bounding = _bounding(last)
    except OSError as exc:
        raise PolicyViolationError(
            f"cannot restrict capabilities to {caps.source or 'the requested set'}: {exc.strerror}",
            hint="the app was not started; trustd must run it as root (CAP_SETPCAP)",
        ) from exc
    if not bounding == now.effective == now.permitted == now.inheritable == granted:
        raise PolicyViolationError(
            f"capabilities did not take: wanted {granted:#x}, bounding {bounding:#x}, "
            f"effective {now.effective:#x}, permitted {now.permitted:#x}",
            hint="the app was not started",
        )
    return AppliedCaps(names_of(granted), caps.caps - names_of(granted))

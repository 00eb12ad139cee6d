"""Resource quantities as rkt's ``--memory``/``--cpu`` flags and appc isolators spell them.

The grammar is the Kubernetes ``resource.Quantity`` one that appc (and so rkt) uses:
``64M`` is 64 * 10**6 bytes, ``64Mi`` is 64 * 2**20, ``1e9`` is 10**9, and CPU is counted in
millicores (``500m``, ``1``, ``1.5``). Anything else is refused with a :class:`UserError`
naming the value; these parsers never raise anything else.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trustd.shared.errors import UserError

if TYPE_CHECKING:
    import decimal

MAX_MEMORY = 1 << 62  # 4 EiB: above every kernel limit, below int64 overflow
MAX_CPU_MILLICORES = 10**7  # 10,000 cores
MAX_PIDS = 1 << 22  # the kernel's PID_MAX_LIMIT
_MAX_TEXT = 64

_BINARY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60}
_DECIMAL = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_NUMBER = r"\+?(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_MEMORY_RE = re.compile(
    _NUMBER + r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[kMGTPE])|[eE](?P<exp>[+-]?[0-9]{1,3}))?"
)
_CPU_RE = re.compile(_NUMBER + r"(?P<milli>m)?")


@functools.cache
def _exact() -> decimal.Context:
    """Exact arithmetic: 64 characters of digits times 2**60 fit well within 100 digits.
    ``decimal`` is loaded only for a pod with a limit to parse (issue #14)."""
    import decimal  # noqa: PLC0415

    return decimal.Context(prec=100, Emax=10_000, Emin=-10_000, traps=[decimal.InvalidOperation])


_UNIT = {"memory limit": "bytes", "cpu limit": "millicores"}
_MEMORY_HINT = "give bytes or a quantity such as 64M, 512Mi or 1Gi (M = 10^6, Mi = 2^20)"
_CPU_HINT = "give cores or millicores, such as 1, 1.5 or 500m"


def _whole(value: decimal.Decimal, what: str, text: str, hint: str) -> int:
    if value != value.to_integral_value(context=_exact()):
        raise UserError(f"{what} {text!r} is not a whole number of {_UNIT[what]}", hint=hint)
    return int(value)


def parse_memory(text: str) -> int:
    """Bytes for an appc/k8s memory quantity: ``"64M"``, ``"1G"``, ``"512Ki"``, ``"1048576"``."""
    match = _MEMORY_RE.fullmatch(text) if len(text) <= _MAX_TEXT else None
    if match is None:
        raise UserError(f"memory limit {text!r} is not a quantity", hint=_MEMORY_HINT)
    from decimal import Decimal  # noqa: PLC0415

    number = Decimal(match["num"])
    if match["exp"] is not None:
        value = number.scaleb(int(match["exp"]), context=_exact())
    else:
        suffix = match["suffix"] or ""
        value = _exact().multiply(number, _BINARY.get(suffix) or _DECIMAL[suffix])
    if not 0 < value <= MAX_MEMORY:
        raise UserError(
            f"memory limit {text!r} is out of range (1 byte to {MAX_MEMORY} bytes)",
            hint=_MEMORY_HINT,
        )
    return _whole(value, "memory limit", text, _MEMORY_HINT)


def parse_cpu(text: str) -> int:
    """Millicores for an appc/k8s CPU quantity: ``"500m"`` -> 500, ``"1"`` -> 1000, ``"1.5"``."""
    match = _CPU_RE.fullmatch(text) if len(text) <= _MAX_TEXT else None
    if match is None:
        raise UserError(f"cpu limit {text!r} is not a quantity", hint=_CPU_HINT)
    from decimal import Decimal  # noqa: PLC0415

    number = Decimal(match["num"])
    value = number if match["milli"] else _exact().multiply(number, 1000)
    if not 0 < value <= MAX_CPU_MILLICORES:
        raise UserError(
            f"cpu limit {text!r} is out of range (1m to {MAX_CPU_MILLICORES}m)", hint=_CPU_HINT
        )
    return _whole(value, "cpu limit", text, _CPU_HINT)


def _check_count(name: str, value: int | None, maximum: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= maximum:
        raise UserError(
            f"{name} limit {value!r} is out of range (1 to {maximum})",
            hint=f"give the {name} limit as a positive whole number",
        )


@dataclass(frozen=True)
class Limits:
    """What a pod may use. ``None`` means no limit of that kind.

    ``memory`` is in bytes, ``cpu`` in millicores (1000 = one core), ``pids`` is the most
    tasks the pod may have at once.
    """

    memory: int | None = None
    cpu: int | None = None
    pids: int | None = None
    cpu_shares: int | None = None  # appc os/linux/cpu-shares (cgroup v1 cpu.shares, 2..262144)

    def __post_init__(self) -> None:
        _check_count("memory", self.memory, MAX_MEMORY)
        _check_count("cpu shares", self.cpu_shares, 262144)
        _check_count("cpu", self.cpu, MAX_CPU_MILLICORES)
        _check_count("pids", self.pids, MAX_PIDS)

    @classmethod
    def parse(
        cls, *, memory: str | None = None, cpu: str | None = None, pids: int | None = None
    ) -> Limits:
        """Limits from rkt's flag/isolator spellings (``--memory=64M --cpu=500m``)."""
        return cls(
            memory=None if memory is None else parse_memory(memory),
            cpu=None if cpu is None else parse_cpu(cpu),
            pids=pids,
        )

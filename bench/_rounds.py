"""Interleaved rounds, shared by every bench (CONVENTIONS: compare commands side by side).

Each round runs every contender once; the order rotates by one from round to round, so a slow
phase of the machine touches every contender alike. A contender is a command line or a callable
taking the round number and returning seconds.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable, Mapping

Contender = list[str] | Callable[[int], float]


def once(cmd: list[str]) -> float:
    """Seconds for one run of ``cmd`` (output captured; a failure raises)."""
    began = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - began


def _run(contender: Contender, n: int) -> float:
    return once(contender) if isinstance(contender, list) else contender(n)


def interleaved(
    contenders: Mapping[str, Contender],
    rounds: int,
    *,
    warm: bool = True,
    after_round: Callable[[int], None] | None = None,
    offset: int = 0,
) -> dict[str, list[float]]:
    """``rounds`` rounds of every contender, the order rotated each round.

    ``warm`` runs each once first, untimed (render trees, page in binaries, fill caches);
    ``after_round(n)`` runs between rounds, untimed (clean-up, bookkeeping); ``offset`` starts
    the rotation further on (for callers that run one round at a time).
    """
    names = list(contenders)
    if warm:
        for name in names:
            _run(contenders[name], -1)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for n in range(rounds):
        shift = (n + offset) % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(_run(contenders[name], n))
        if after_round is not None:
            after_round(n)
    return samples


def summary(samples: list[float]) -> tuple[float, float]:
    """(median, p90) of ``samples``."""
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[max(int(len(ordered) * 0.9) - 1, 0)]

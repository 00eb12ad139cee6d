"""The start cost of a pod network: ``rkt run --net=default`` against ``--net=none`` of a
busybox app that prints one line, in interleaved rounds (each round runs both, in alternating
order, so a machine that slows down slows both).

Two times per run: *start*, from launching ``rkt run`` to the app's first line on stdout (the
app is running: everything the network adds before it, netns, CNI ADD, /etc files, is in
it), and *whole run*, until ``rkt run`` has returned (CNI DEL and the netns removal after
the app exits are in it). The target (issue #16) is on the start: at most 30 ms added, the
median of the per-round differences. The teardown is reported beside it, not hidden: trustd
runs CNI DEL before ``rkt run`` returns (rkt left it to ``rkt gc``; ADR 0019).

Run by ``make bench`` as root (never by the tests).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._pods import data_dir_with_busybox  # noqa: E402
from bench._rounds import interleaved  # noqa: E402
from trustd.privileged.measure import stop_embedded  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_NET_ROUNDS", "20"))
RKT = str(Path(sys.executable).with_name("rkt"))
TARGET_MS = 30.0


def _contender(cmd: list[str], whole: list[float]) -> Callable[[int], float]:
    """One run: seconds to the app's first line (returned) and to rkt's exit (``whole``)."""

    def run(n: int) -> float:
        began = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdout is not None  # noqa: S101 - a pipe
        line = proc.stdout.readline()
        started = time.perf_counter()
        proc.stdout.read()
        if proc.wait() != 0 or b"started" not in line:
            raise RuntimeError(f"{cmd!r} failed (exit {proc.returncode}, output {line!r})")
        if n >= 0:
            whole.append(time.perf_counter() - began)
        return started - began

    return run


def _diff_ms(samples: dict[str, list[float]]) -> float:
    pairs = zip(samples["default"], samples["none"], strict=True)
    return statistics.median(d - n for d, n in pairs) * 1000


def main() -> int:
    if os.geteuid() != 0:
        print("bench/net.py: needs root (pods and CNI plugins)", file=sys.stderr)
        return 0
    if not Path("/usr/lib/cni/ptp").exists():
        print("bench/net.py: needs containernetworking-plugins", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory(prefix="trustd-bench-net-") as tmp:
        work = Path(tmp)
        flags, key = data_dir_with_busybox(work, "bench.trustd.test/echo", ["/bin/echo", "started"])
        whole: dict[str, list[float]] = {"none": [], "default": []}
        contenders = {
            net: _contender([RKT, *flags, "run", f"--net={net}", key], whole[net])
            for net in ("none", "default")
        }
        start = interleaved(contenders, ROUNDS)  # warm: the rendered tree, the plugins paged in
        stop_embedded(work / "data")
        load = os.getloadavg()[0]
        print(f"pod network cost, busybox echo, {ROUNDS} rounds (median), load {load:.1f}")
        print("                 to the app's output   whole rkt run")
        for net in ("none", "default"):
            s, w = (statistics.median(x[net]) * 1000 for x in (start, whole))
            print(f"  --net={net:<8} {s:10.1f} ms {w:18.1f} ms")
        added, added_whole = _diff_ms(start), _diff_ms(whole)
        verdict = "within" if added <= TARGET_MS else "over"
        print(f"  added          {added:10.1f} ms {added_whole:18.1f} ms")
        print(f"  start cost {added:.1f} ms: {verdict} the {TARGET_MS:.0f} ms target")
        print(f"  teardown after the app (CNI DEL, netns): {added_whole - added:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

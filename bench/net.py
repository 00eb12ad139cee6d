"""The start cost of a pod network: ``rkt run --net=default`` against ``--net=none`` of
/bin/true (busybox), in interleaved rounds (each round runs both, in alternating order, so
a machine that slows down slows both). Reports the median of each and the median of the
per-round differences; the target (issue #16) is at most 30 ms.

Run by ``make bench`` as root (never by the tests).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._rounds import interleaved  # noqa: E402
from tests._busybox import busybox_aci  # noqa: E402
from tests._policy import install_policy  # noqa: E402
from trustd.privileged.measure import stop_embedded  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_NET_ROUNDS", "20"))
RKT = str(Path(sys.executable).with_name("rkt"))
TARGET_MS = 30.0


def main() -> int:
    if os.geteuid() != 0:
        print("bench/net.py: needs root (pods and CNI plugins)", file=sys.stderr)
        return 0
    if not Path("/usr/lib/cni/ptp").exists():
        print("bench/net.py: needs containernetworking-plugins", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory(prefix="trustd-bench-net-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # root's fetch runs as rkt-fetch (ADR 0005)
        flags = [
            f"--dir={work / 'data'}",
            f"--local-config={work / 'etc'}",
            f"--system-config={work / 'usr'}",
            "--insecure-options=image",
        ]
        install_policy(work / "usr")
        aci = busybox_aci(work / "bb.aci", "bench.trustd.test/true", exec_=["/bin/true"])
        key = subprocess.run(
            [RKT, *flags, "fetch", "--full", str(aci)], check=True, capture_output=True, text=True
        ).stdout.strip()
        cmds = {net: [RKT, *flags, "run", f"--net={net}", key] for net in ("none", "default")}
        samples = interleaved(cmds, ROUNDS)  # warm: the rendered tree, the plugins paged in
        diffs = [d - n for d, n in zip(samples["default"], samples["none"], strict=True)]
        stop_embedded(work / "data")
        none, default = (statistics.median(samples[n]) * 1000 for n in ("none", "default"))
        added = statistics.median(diffs) * 1000
        verdict = "within" if added <= TARGET_MS else "over"
        print(f"pod network start cost, /bin/true, {ROUNDS} interleaved rounds (median)")
        print(f"  --net=none     {none:7.1f} ms")
        print(f"  --net=default  {default:7.1f} ms")
        print(f"  added          {added:7.1f} ms  ({verdict} the {TARGET_MS:.0f} ms target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

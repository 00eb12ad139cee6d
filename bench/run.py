"""trustd benchmarks, run by ``make bench`` (never by the tests).

verify: detached-signature verification of one large file by trustd (Sequoia streaming the
file), next to ``gpg --verify`` and ``sha512sum`` over the same bytes in the same run.
Figures are medians of several runs, reported as ratios against the peers.
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

from tests._gpg import GpgHome  # noqa: E402
from trustd.appc import ACIdentifier  # noqa: E402
from trustd.verify import Keyring, TrustedKey, parse_public_keys, verify_detached  # noqa: E402

SIZE_MB = int(os.environ.get("BENCH_SIZE_MB", "200"))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))


def median_seconds(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_verify(work: Path) -> None:
    gpg = GpgHome(work / "gnupg")
    fpr = gpg.generate("Bench <bench@trustd.test>")
    data = work / "image.aci"
    with data.open("wb") as f:
        for _ in range(SIZE_MB):
            f.write(os.urandom(1 << 20))
    sig = gpg.sign(fpr, data, work / "image.aci.asc")
    key = parse_public_keys(gpg.export(fpr), source="bench")[0]
    ring = Keyring(
        ACIdentifier("bench.trustd.test/app"), (TrustedKey(key, None, "local", work / fpr),)
    )
    signature = sig.read_bytes()
    gpg_cmd = [
        "gpg",
        "--homedir",
        str(gpg.home),
        "--batch",
        "--quiet",
        "--verify",
        str(sig),
        str(data),
    ]
    results = {
        "trustd verify": median_seconds(lambda: verify_detached(data, signature, ring)),
        "gpg --verify": median_seconds(
            lambda: subprocess.run(gpg_cmd, check=True, capture_output=True)
        ),
        "sha512sum": median_seconds(
            lambda: subprocess.run(["sha512sum", str(data)], check=True, capture_output=True)
        ),
    }
    print(f"signature verification of {SIZE_MB} MB, median of {RUNS} runs")
    base = results["trustd verify"]
    for name, secs in results.items():
        print(
            f"  {name:<14} {secs * 1000:8.1f} ms  {SIZE_MB / secs:7.1f} MB/s  "
            f"trustd/this = {base / secs:5.2f}"
        )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="trustd-bench-") as tmp:
        bench_verify(Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Pod start-to-exit of /bin/true (busybox) in trustd's fly and container stage1s, next to
crun and runc running the same rootfs, in the same run. Median and p90 of N runs.

Run by ``make bench`` as root (never by the tests). crun refuses this machine's hybrid
cgroup layout, so it runs in a private mount namespace with /sys/fs/cgroup/unified
unmounted (see the machine probe).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests._busybox import busybox_aci  # noqa: E402
from tests._policy import install_policy  # noqa: E402
from trustd.privileged.measure import stop_embedded  # noqa: E402

RUNS = int(os.environ.get("BENCH_START_RUNS", "30"))
RKT = str(Path(sys.executable).with_name("rkt"))


def timings(fn: Callable[[], object]) -> tuple[float, float]:
    fn()  # warm: render the tree, page in the binaries
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9) - 1]


def _oci_bundle(work: Path, rootfs: Path, runtime: str) -> Path:
    bundle = work / f"bundle-{runtime}"
    bundle.mkdir()
    shutil.copytree(rootfs, bundle / "rootfs", symlinks=True)
    subprocess.run([runtime, "spec"], cwd=bundle, check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["args"], spec["process"]["terminal"] = ["/bin/true"], False
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


def main() -> int:
    if os.geteuid() != 0:
        print("bench/start.py: needs root (pods and OCI runtimes)", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory(prefix="trustd-bench-start-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # root's fetch runs as rkt-fetch (ADR 0005)
        flags = [
            f"--dir={work / 'data'}",
            f"--local-config={work / 'etc'}",
            f"--system-config={work / 'usr'}",
            "--insecure-options=image",
        ]
        install_policy(work / "usr")  # the tests' policy: allows fly and the insecure import
        aci = busybox_aci(work / "bb.aci", "bench.trustd.test/true", exec_=["/bin/true"])
        key = subprocess.run(
            [RKT, *flags, "fetch", "--full", str(aci)], check=True, capture_output=True, text=True
        ).stdout.strip()
        results: dict[str, tuple[float, float]] = {}
        for flavor in ("fly", "container"):
            cmd = [RKT, *flags, "run", f"--stage1-name={flavor}", key]
            results[f"trustd {flavor}"] = timings(
                lambda c=cmd: subprocess.run(c, check=True, capture_output=True)
            )
        rootfs = next((work / "data/private/tree").glob(key + "*")) / "rootfs"
        for runtime in ("runc", "crun"):
            if shutil.which(runtime) is None:
                print(f"  ({runtime} not installed; make bench installs it)")
                continue
            bundle = _oci_bundle(work, rootfs, runtime)
            run = [runtime, "run", "-b", str(bundle), f"bench-{runtime}"]
            if runtime == "crun":
                run = [
                    "unshare",
                    "-m",
                    "sh",
                    "-c",
                    "umount /sys/fs/cgroup/unified 2>/dev/null; exec " + " ".join(run),
                ]
            results[runtime] = timings(
                lambda r=run: subprocess.run(r, check=True, capture_output=True)
            )
        stop_embedded(work / "data")  # the pods were measured into an embedded swtpm
        print(f"pod start-to-exit of /bin/true, {RUNS} runs (median / p90)")
        base = results.get("runc", (0.0, 0.0))[0]
        for name, (median, p90) in results.items():
            ratio = f"  {median / base:5.2f}x runc" if base else ""
            print(f"  {name:<18} {median * 1000:7.1f} ms / {p90 * 1000:7.1f} ms{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

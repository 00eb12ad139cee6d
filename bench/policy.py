"""What a 10,000-scope policy adds to a pod start (issue #14, target ≤ 10 %).

Two data dirs with the same image: one under the tests' policy, one under that policy plus
10,000 scopes that do not match the image (so both decide by the same rules). Rounds alternate
the order; the first start of each dir (which compiles the policy into root's cache) is not
timed. Run by ``make bench`` as root.
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
from tests._policy import install_policy, policy_for_tests  # noqa: E402
from trustd.privileged.measure import stop_embedded  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_POLICY_ROUNDS", "15"))
SCOPES = int(os.environ.get("BENCH_POLICY_SCOPES", "10000"))
RKT = str(Path(sys.executable).with_name("rkt"))


def _big_policy() -> str:
    scopes = "".join(
        f'[scopes."s{i}.example.org/app"]\nrequire = {{ threshold = 1 }}\n' for i in range(SCOPES)
    )
    return policy_for_tests() + "\n" + scopes


def main() -> int:
    if os.geteuid() != 0:
        print("bench/policy.py: needs root (pods)", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory(prefix="trustd-bench-policy-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        aci = busybox_aci(work / "bb.aci", "bench.trustd.test/true", exec_=["/bin/true"])
        runs: dict[str, list[str]] = {}
        datas = []
        for name, text in (("small", None), ("10k scopes", _big_policy())):
            base = work / name.replace(" ", "-")
            base.mkdir(mode=0o755)
            install_policy(base / "usr", text)
            flags = [
                f"--dir={base / 'data'}",
                f"--local-config={base / 'etc'}",
                f"--system-config={base / 'usr'}",
                "--insecure-options=image",
            ]
            key = subprocess.run(
                [RKT, *flags, "fetch", "--full", str(aci)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            runs[name] = [RKT, *flags, "run", "--stage1-name=fly", key]
            datas.append(base / "data")
        try:
            samples = interleaved(runs, ROUNDS)  # warm: render, start the swtpm, compile the policy
        finally:
            for data in datas:
                stop_embedded(data)
    small, big = (statistics.median(v) for v in samples.values())
    size = len(_big_policy().encode()) // 1024
    verdict = "ok" if big / small <= 1.10 else "ABOVE the 1.10 target"
    print(f"pod start (fly) under a {SCOPES}-scope policy ({size} KiB), {ROUNDS} rounds, medians")
    print(f"  small policy {small * 1000:7.1f} ms   {SCOPES} scopes {big * 1000:7.1f} ms")
    print(f"  ratio {big / small:5.3f}  ({verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

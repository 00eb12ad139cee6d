"""Pod start-to-exit of /bin/true (busybox) in trustd's fly and container stage1s, next to
crun and runc running the same rootfs and a venv ``python -c pass``, in the same run.

Each round runs every command once, interleaved, the order rotated from round to round, so a
drift of the machine (the 2 cores are shared) touches every command alike; the report is the
median and p90 of each, and ratios against runc. Run by ``make bench`` as root (never by the
tests). crun refuses this machine's hybrid cgroup layout, so it runs in a private mount
namespace with /sys/fs/cgroup/unified unmounted (see the machine probe).

runc's and crun's ``spec`` gives the container a new, empty network namespace: the like for
like is ``--net=none`` (a new namespace with loopback only). ``rkt run``'s default,
``--net=default`` (CNI ptp, iptables; issue #16's net start cost), is the other container row.
Before timing, the package's bytecode is compiled, as an install does: with
PYTHONDONTWRITEBYTECODE set in the caller's environment, every ``rkt`` would otherwise compile
its modules again. The report names the install it measured: a venv's editable install adds
its import finder to every interpreter start (``make install`` has none).
"""

from __future__ import annotations

import compileall
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._pods import data_dir_with_busybox  # noqa: E402
from bench._rounds import interleaved, once, summary  # noqa: E402
from trustd.privileged.measure import stop_embedded  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_START_ROUNDS", "30"))
RKT = str(Path(sys.executable).with_name("rkt"))
TARGETS = {  # x runc, issue #14
    "trustd container": 3.0,
    "trustd container --net=none": 3.0,
    "trustd fly": 2.0,
}
P90_TARGET = 1.5  # p90 / median


def _oci_bundle(work: Path, rootfs: Path, runtime: str) -> Path:
    bundle = work / f"bundle-{runtime}"
    bundle.mkdir()
    shutil.copytree(rootfs, bundle / "rootfs", symlinks=True)
    subprocess.run([runtime, "spec"], cwd=bundle, check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["args"], spec["process"]["terminal"] = ["/bin/true"], False
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


def _peer(work: Path, rootfs: Path, runtime: str) -> list[str] | None:
    if shutil.which(runtime) is None:
        print(f"  ({runtime} not installed; make bench installs it)")
        return None
    bundle = _oci_bundle(work, rootfs, runtime)
    run = [runtime, "run", "-b", str(bundle), f"bench-{runtime}"]
    if runtime == "crun":
        hide = "umount /sys/fs/cgroup/unified 2>/dev/null; exec "
        return ["unshare", "-m", "sh", "-c", hide + " ".join(run)]
    return run


def _install() -> str:
    """Which install of trustd this measures (an editable one loads its finder at start)."""
    import trustd  # noqa: PLC0415

    site = Path(trustd.__file__).resolve().parents[1]
    finders = (Path(p).glob("__editable___trustd*finder.py") for p in sys.path if p)
    if any(any(found) for found in finders):
        return f"editable install of {site} (its import finder loads at every start)"
    return f"install of {site}"


def report(samples: dict[str, list[float]]) -> None:
    print(f"pod start-to-exit of /bin/true, {ROUNDS} interleaved rounds, order rotated")
    print(f"  trustd: {_install()}; load average {os.getloadavg()[0]:.2f} at the end")
    print(f"  {'':<28} {'median':>9} {'p90':>9}  p90/med  x runc")
    base = summary(samples["runc"])[0] if "runc" in samples else 0.0
    for name, values in samples.items():
        median, p90 = summary(values)
        ratio = f"{median / base:6.2f}" if base else "     -"
        goal = TARGETS.get(name)
        verdict = ""
        if goal is not None and base:
            ok = median / base <= goal and p90 / median <= P90_TARGET
            verdict = f"  (target {goal:.0f}x, p90 {P90_TARGET}x: {'ok' if ok else 'ABOVE'})"
        print(
            f"  {name:<28} {median * 1000:6.1f} ms {p90 * 1000:6.1f} ms  "
            f"{p90 / median:6.2f}  {ratio}{verdict}"
        )


def main() -> int:
    if os.geteuid() != 0:
        print("bench/start.py: needs root (pods and OCI runtimes)", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory(prefix="trustd-bench-start-") as tmp:
        work = Path(tmp)
        flags, key = data_dir_with_busybox(work, "bench.trustd.test/true", ["/bin/true"])
        compileall.compile_dir(ROOT / "trustd", quiet=1)  # what an install ships
        commands = {
            f"trustd {flavor}": [RKT, *flags, "run", f"--stage1-name={flavor}", key]
            for flavor in ("container", "fly")
        }
        commands["trustd container --net=none"] = [RKT, *flags, "run", "--net=none", key]
        once(commands["trustd fly"])  # render the tree
        rootfs = next((work / "data/private/tree").glob(key + "*")) / "rootfs"
        for runtime in ("runc", "crun"):
            if (cmd := _peer(work, rootfs, runtime)) is not None:
                commands[runtime] = cmd
        commands["python -c pass"] = [sys.executable, "-c", "pass"]
        try:
            samples = interleaved(commands, ROUNDS)
        finally:
            stop_embedded(work / "data")  # the pods were measured into an embedded swtpm
    report(samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())

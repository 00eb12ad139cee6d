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

``BENCH_START_BASELINE=DIR`` adds an older trustd tree (e.g. a worktree of main) as
contenders in the same rounds: "baseline container", "baseline fly" and so on, on the same
data dir. Then both trees run from plain installs (the tree and this venv's dependencies as
paths on ``sys.path``, no editable finder: as ``make install`` lays them out), each in a venv
of its own, so each ``rkt`` execs its own tree's root program.
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
BASELINE = os.environ.get("BENCH_START_BASELINE")
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


def _plain_rkt(work: Path, tree: Path, name: str) -> list[str]:
    """``rkt`` of ``tree`` from a plain install: a venv whose ``sys.path`` holds the tree, then
    this venv's site-packages as a plain path (its editable finder's .pth is not read). The
    root program, ``sys.executable -I -m ...``, then loads the same tree."""
    import sysconfig  # noqa: PLC0415

    venv = work / f"venv-{name}"
    subprocess.run(
        [getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", venv],
        check=True,
    )
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    deps = dict.fromkeys((sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]))
    Path(site, "trustd-bench.pth").write_text("\n".join([str(tree), *deps]) + "\n")
    compileall.compile_dir(tree / "trustd", quiet=1)
    entry = "import sys; from trustd.cli.main import entry; sys.argv[0] = 'rkt'; entry()"
    return [str(python), "-c", entry]


def _contenders(work: Path, flags: list[str], key: str) -> dict[str, list[str]]:
    """trustd's rows (and the baseline's, with BENCH_START_BASELINE)."""
    trees = {"trustd": [RKT]}
    if BASELINE:
        trees = {
            "trustd": _plain_rkt(work, ROOT, "trustd"),
            "baseline": _plain_rkt(work, Path(BASELINE).resolve(), "baseline"),
        }
    commands = {}
    for label, rkt in trees.items():
        for flavor in ("container", "fly"):
            commands[f"{label} {flavor}"] = [*rkt, *flags, "run", f"--stage1-name={flavor}", key]
        commands[f"{label} container --net=none"] = [*rkt, *flags, "run", "--net=none", key]
    return commands


def _install() -> str:
    """Which install of trustd this measures (an editable one loads its finder at start)."""
    import trustd  # noqa: PLC0415

    if BASELINE:
        return f"plain installs of {ROOT} and, as baseline, {Path(BASELINE).resolve()}"
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
    _versus_baseline(samples)


def _versus_baseline(samples: dict[str, list[float]]) -> None:
    """Each trustd row against the baseline's row of the same command, same rounds."""
    for name in [n for n in samples if n.startswith("trustd ")]:
        old = samples.get("baseline " + name.removeprefix("trustd "))
        if old:
            new_median, old_median = summary(samples[name])[0], summary(old)[0]
            print(f"  {name}: {new_median / old_median:.3f}x the baseline's median")


def main() -> int:
    if os.geteuid() != 0:
        print("bench/start.py: needs root (pods and OCI runtimes)", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory(prefix="trustd-bench-start-") as tmp:
        work = Path(tmp)
        flags, key = data_dir_with_busybox(work, "bench.trustd.test/true", ["/bin/true"])
        compileall.compile_dir(ROOT / "trustd", quiet=1)  # what an install ships
        commands = _contenders(work, flags, key)
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

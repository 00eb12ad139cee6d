"""Listings and gc at scale (issue #14), each against its baseline, interleaved and rotated:

- ``rkt list`` of 1,000 pods against 10 pods (target ≤ 1.3x);
- ``rkt image list`` of 10,000 images against a venv ``python -c`` that selects every row
  with sqlite3 (target ≤ 2x);
- ``rkt gc`` of 1,000 exited pods against ``rm -rf`` of copies of the same directories
  (target ≤ 1.2x).

The pods are copies of one real exited pod (``cp -a``, new UUIDs); the images are index rows
made through the store's own ``Index.insert``. Run by ``make bench`` as root.

``BENCH_LISTING_BASELINE=DIR`` puts another trustd tree's ``rkt`` (``DIR/.venv/bin/rkt``, e.g.
main's) in the same rounds for each listing and ``rkt gc``, on the same data (gc on its own
copy). Every line also gives the CPU time (user+sys of the command's process tree), which
the load of a shared machine disturbs less than the wall time.
"""

from __future__ import annotations

import hashlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._rounds import Contender, interleaved  # noqa: E402
from tests._busybox import busybox_aci  # noqa: E402
from tests._policy import install_policy  # noqa: E402
from trustd.privileged.measure import stop_embedded  # noqa: E402
from trustd.shared.store._index import Index  # noqa: E402
from trustd.shared.store.model import ImageRecord, Provenance  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_LISTING_ROUNDS", "7"))
PODS = int(os.environ.get("BENCH_LISTING_PODS", "1000"))
IMAGES = int(os.environ.get("BENCH_LISTING_IMAGES", "10000"))
ONLY = os.environ.get("BENCH_LISTING_ONLY", "")  # "list", "images" or "gc": that part only
RKT = str(Path(sys.executable).with_name("rkt"))
_BASE = os.environ.get("BENCH_LISTING_BASELINE")
BASE_RKT = str(Path(_BASE) / ".venv" / "bin" / "rkt") if _BASE else None
CPU: dict[str, list[float]] = {}


def _children_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def _cpu_timed(label: str, cmd: list[str]) -> Contender:
    """``cmd`` as a contender that also records its CPU time under ``label``."""

    def run(_n: int) -> float:
        cpu = _children_cpu()
        began = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        took = time.perf_counter() - began
        CPU.setdefault(label, []).append(_children_cpu() - cpu)
        return took

    return run


class Data:
    def __init__(self, work: Path, name: str, aci: Path) -> None:
        base = work / name
        base.mkdir(mode=0o755)
        self.data = base / "data"
        self.flags = [
            f"--dir={self.data}",
            f"--local-config={base / 'etc'}",
            f"--system-config={work / 'usr'}",
            "--insecure-options=image",
        ]
        self.key = self.rkt("fetch", "--full", str(aci)).strip()

    def rkt(self, *args: str) -> str:
        done = subprocess.run(
            [RKT, *self.flags, *args], capture_output=True, text=True, check=False
        )
        if done.returncode:
            raise SystemExit(f"bench/listing.py: rkt {args[0]} failed: {done.stderr}")
        return done.stdout

    def pods(self, count: int, where: str = "run") -> None:
        """``count`` exited pods: the first a real one, the rest copies of it."""
        self.rkt("run", "--stage1-name=fly", self.key)
        base = self.data / "pods" / where
        if where != "run":
            base.mkdir(exist_ok=True)
        model = next((self.data / "pods" / "run").iterdir())
        for _ in range(count - len(list(base.iterdir()))):
            copy = base / str(uuid.uuid4())
            subprocess.run(["cp", "-a", str(model), str(copy)], check=True)
            (copy / "private").chmod(0o700)  # cp -a keeps the setgid bit it got from pods/run


def _images(data: Path, count: int) -> None:
    """``count`` rows as real fetches leave them: each its own import and last-use times, its
    own verification time (so its own provenance text), size and version; the labels' keys
    repeat, as the os and arch labels do. (Identical rows would flatter the listing, which
    decodes each distinct labels and provenance text once.)"""
    index = Index(data / "cas" / "db" / "index.sqlite")
    now = datetime.now(UTC)
    with index.session():  # one transaction: the bench makes rows, it does not time this
        for n in range(count):
            digest = hashlib.sha512(str(n).encode()).hexdigest()
            imported = now - timedelta(seconds=37 * (count - n))
            prov = Provenance((), insecure=True, verified_at=imported.isoformat())
            index.insert(
                ImageRecord(
                    f"sha512-{digest[:64]}",
                    digest,
                    f"bench.trustd.test/image{n}",
                    (("version", f"1.{n % 50}"), ("os", "linux"), ("arch", "amd64")),
                    imported,
                    imported + timedelta(seconds=11 * n),
                    1000 + 4099 * n,
                    2000 + 8209 * n,
                    "bench",
                    prov,
                )
            )


def _line(name: str, big: float, base: float, goal: float, cpu: str = "") -> None:
    verdict = "ok" if big / base <= goal else "ABOVE"
    print(
        f"  {name:<40} {big * 1000:7.1f} ms vs {base * 1000:7.1f} ms  {big / base:5.2f}x  "
        f"({verdict} {goal}x){cpu}"
    )


def _cpu(label: str, base: str) -> str:
    if label not in CPU or base not in CPU:
        return ""
    mb, m0 = statistics.median(CPU[label]), statistics.median(CPU[base])
    return f"; CPU {mb * 1000:.0f} vs {m0 * 1000:.0f} ms, {mb / m0:.2f}x"


def _pair(name: str, big: list[str], base: list[str], goal: float, *, main: bool = False) -> None:
    contenders: dict[str, Contender] = {
        "big": _cpu_timed(f"{name} big", big),
        "base": _cpu_timed(f"{name} base", base),
    }
    if main and BASE_RKT:
        contenders["main big"] = _cpu_timed(f"{name} main big", [BASE_RKT, *big[1:]])
        if base[0] == RKT:  # else the baseline is not trustd's, and one serves both
            contenders["main base"] = _cpu_timed(f"{name} main base", [BASE_RKT, *base[1:]])
    samples = interleaved(contenders, ROUNDS)
    med = {k: statistics.median(v) for k, v in samples.items()}
    _line(name, med["big"], med["base"], goal, _cpu(f"{name} big", f"{name} base"))
    if "main big" in med:
        against = "main base" if "main base" in med else "base"
        cpu = _cpu(f"{name} main big", f"{name} {against}")
        _line(f"  main: {name}", med["main big"], med[against], goal, cpu)


def _gc(work: Path, aci: Path) -> None:
    def gc_round(n: int) -> tuple[Data, dict[str, Contender]]:
        d = Data(work, f"gc{n}", aci)
        d.pods(PODS)
        # rkt gc takes two passes (mark exited, then collect after the grace period)
        d.rkt("gc", "--grace-period=0s", "--mark-only")
        copy = work / f"rm{n}"
        subprocess.run(["cp", "-a", str(d.data / "pods" / "exited-garbage"), str(copy)], check=True)
        gc = [RKT, *d.flags, "gc", "--grace-period=0s"]
        contenders = {"gc": _cpu_timed("gc", gc), "rm": _cpu_timed("rm", ["rm", "-rf", str(copy)])}
        if BASE_RKT:  # main's rkt on its own copy of the same data dir
            other = work / f"gcmain{n}"
            subprocess.run(["cp", "-a", str(d.data.parent), str(other)], check=True)
            flags = [f.replace(str(d.data.parent), str(other)) for f in d.flags]
            contenders["gc main"] = _cpu_timed("gc main", [BASE_RKT, *flags, "gc", gc[-1]])
        subprocess.run(["sync"], check=True)
        return d, contenders

    # every round needs fresh pods: one single-round interleaving per round, the order rotated
    times: dict[str, list[float]] = {}
    for n in range(max(ROUNDS // 2, 2)):
        d, contenders = gc_round(n)
        for label, values in interleaved(contenders, 1, warm=False, offset=n).items():
            times.setdefault(label, []).extend(values)
        stop_embedded(d.data)
    med = {k: statistics.median(v) for k, v in times.items()}
    name = f"rkt gc of {PODS} exited pods vs rm -rf"
    _line(name, med["gc"], med["rm"], 1.2, _cpu("gc", "rm"))
    if "gc main" in med:
        _line(f"  main: {name}", med["gc main"], med["rm"], 1.2, _cpu("gc main", "rm"))


def main() -> int:
    if os.geteuid() != 0:
        print("bench/listing.py: needs root (pods)", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory(prefix="trustd-bench-listing-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        install_policy(work / "usr")
        aci = busybox_aci(work / "bb.aci", "bench.trustd.test/true", exec_=["/bin/true"])
        load = os.getloadavg()[0]
        print(f"listings and gc, {ROUNDS} interleaved rounds (medians), load {load:.1f}")
        if ONLY in ("", "list", "images"):
            _listings(work, aci)
        if ONLY in ("", "gc"):
            _gc(work, aci)
        print(f"  load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


def _listings(work: Path, aci: Path) -> None:
    small, large = Data(work, "small", aci), Data(work, "large", aci)
    try:
        small.pods(10)
        large.pods(PODS)
        if ONLY != "images":
            _pair(
                f"rkt list: {PODS} pods vs 10",
                [RKT, *large.flags, "list"],
                [RKT, *small.flags, "list"],
                1.3,
                main=True,
            )
        if ONLY != "list":
            _images(large.data, IMAGES)
            select = (
                "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); "
                "print(len(c.execute('select * from images').fetchall()))"
            )
            index = str(large.data / "cas" / "db" / "index.sqlite")
            _pair(
                f"rkt image list: {IMAGES + 1} images vs select",
                [RKT, *large.flags, "image", "list"],
                [sys.executable, "-c", select, index],
                2.0,
                main=True,
            )
    finally:
        stop_embedded(small.data)
        stop_embedded(large.data)


if __name__ == "__main__":
    sys.exit(main())

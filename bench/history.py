"""Pod start #1 against a pod start after 1,000 earlier measured records (issue #11 item 4, #14).

Two data directories, each with its own embedded swtpm: "first", which holds only its own
few earlier starts (measurement goes to PCR 14, which cannot be reset, so a start cannot be
made the first of an epoch again without restarting the swtpm); and "history", which holds
1,000 or more earlier records. The history is made quickly: the events of a real pod start
in that directory are measured again, with other pod UUIDs, through the same code path
(``Measurer.extend_all``, into the same swtpm), and root's last decision is appended again
through ``append_fd``: the same log state as that many pod starts, without running them.
Rounds alternate the two directories, the order rotated each round; median, p90, ratio.

Run by ``make bench`` as root (never by the tests). Target: ratio ≤ 1.10.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._rounds import interleaved, summary  # noqa: E402
from tests._busybox import busybox_aci  # noqa: E402
from tests._policy import install_policy  # noqa: E402
from trustd.privileged.measure import Measurer, decode_log, stop_embedded  # noqa: E402
from trustd.shared.policy.log import append_fd  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_HISTORY_ROUNDS", "20"))
RECORDS = int(os.environ.get("BENCH_HISTORY_RECORDS", "1000"))
FLAVOR = os.environ.get("BENCH_HISTORY_FLAVOR", "fly")
RKT = str(Path(sys.executable).with_name("rkt"))
NO_DEVICE = Path("/nonexistent/tpmrm0")  # as the pods: the embedded swtpm of each data dir


class Dir:
    def __init__(self, work: Path, name: str, aci: Path) -> None:
        self.data = work / name / "data"
        (work / name).mkdir(mode=0o755)
        self.flags = [
            f"--dir={self.data}",
            f"--local-config={work / name / 'etc'}",
            f"--system-config={work / 'usr'}",
            "--insecure-options=image",
        ]
        done = subprocess.run(
            [RKT, *self.flags, "fetch", "--full", str(aci)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            raise SystemExit(f"bench/history.py: rkt fetch failed: {done.stderr}")
        self.key = done.stdout.strip()

    def start(self) -> float:
        cmd = [RKT, *self.flags, "run", f"--stage1-name={FLAVOR}", self.key]
        began = time.perf_counter()
        done = subprocess.run(cmd, check=False, capture_output=True, text=True)
        took = time.perf_counter() - began
        if done.returncode:
            raise SystemExit(f"bench/history.py: rkt run failed: {done.stderr}")
        return took

    @property
    def log(self) -> Path:
        return self.data / "tpm" / "eventlog.json"

    def records(self) -> int:
        return len(decode_log(self.log.read_bytes(), check_digests=False))

    def decisions(self) -> int:
        return len((self.data / "private" / "decisions.jsonl").read_bytes().splitlines())

    def grow(self, records: int) -> None:
        """Measure copies of the last pod start's events until the log holds ``records``."""
        events = [json.loads(r.content_json) for r in decode_log(self.log.read_bytes())]
        pod = events[-1]["data"]["pod"]
        template = [e for e in events if e["data"].get("pod") == pod]
        measurer = Measurer(self.data, device=NO_DEVICE, env={})
        n = 0
        while self.records() < records:
            batch = []
            for _ in range(40):
                n += 1
                fake = f"{n:08d}" + pod[8:]  # same length as a UUID
                batch += [{**e, "data": {**e["data"], "pod": fake}} for e in template]
            measurer.extend_all(23, batch)
        root_log = self.data / "private" / "decisions.jsonl"
        entry = json.loads(root_log.read_bytes().splitlines()[-1])
        del entry["prev"], entry["seq"]
        fd = os.open(root_log, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        try:
            for _ in range(records // len(template)):
                append_fd(fd, str(root_log), entry)
        finally:
            os.close(fd)


def main() -> int:
    if os.geteuid() != 0:
        print("bench/history.py: needs root (pods)", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory(prefix="trustd-bench-history-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # root's fetch runs as rkt-fetch (ADR 0005)
        install_policy(work / "usr")
        aci = busybox_aci(work / "bb.aci", "bench.trustd.test/true", exec_=["/bin/true"])
        first, history = Dir(work, "first", aci), Dir(work, "history", aci)
        try:
            for d in (first, history):
                d.start()  # warm: render the tree, start the swtpm, page in the binaries
            history.grow(RECORDS)
            before = (history.records(), history.decisions())
            first_records: list[int] = []
            samples = interleaved(
                {"first": lambda n: first.start(), "history": lambda n: history.start()},
                ROUNDS,
                warm=False,
                after_round=lambda n: first_records.append(first.records()),
            )
            after = (history.records(), history.decisions())
        finally:
            for d in (first, history):
                stop_embedded(d.data)
    (m1, p1), (mh, ph) = summary(samples["first"]), summary(samples["history"])
    print(f"pod start ({FLAVOR}, /bin/true) with and without history, {ROUNDS} rounds")
    print("  (the history is real pod-start events measured again, same code path, not pods)")
    print("  median / p90")
    print(
        f"  {'first':<8} {m1 * 1000:7.1f} ms / {p1 * 1000:7.1f} ms   "
        f"{min(first_records)} to {max(first_records)} records in its log (no added history)"
    )
    print(
        f"  {'history':<8} {mh * 1000:7.1f} ms / {ph * 1000:7.1f} ms   "
        f"{before[0]} to {after[0]} records before it, {before[1]} to {after[1]} decisions"
    )
    verdict = "ok" if mh / m1 <= 1.10 else "ABOVE the 1.10 target"
    print(f"  ratio history/first (medians) {mh / m1:5.3f}  p90 {ph / p1:5.3f}  ({verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Which files a ``rkt run`` makes durable (ADR 0020 addendum, the batched prepare): the
decision log and the event log always; the pod's plan, manifest and info with one fsync of
each directory; a running pod's /etc files not at all. Counted from the real system calls
(``strace -f``), not timed."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import ConfigDirs
from tests.integration.conftest import RKT

_SYNC = re.compile(r"\b(?:fsync|fdatasync)\(\d+<(?P<path>[^>]*)>\) = 0")


def _synced(dirs: ConfigDirs, image: str, tmp_path: Path, *flags: str) -> Counter[str]:
    """Each fsynced path of one run, with the pod's UUID and temp suffixes taken out."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (apt-get install strace)")
    log = tmp_path / "strace.txt"
    run = [RKT, *dirs.flags(), "run", "--net=none", *flags, image]
    # A first run starts the embedded swtpm, a daemon strace would wait for: not traced.
    first = subprocess.run(run, capture_output=True, text=True, check=False, timeout=120)
    assert first.returncode == 0, first.stderr
    out = subprocess.run(
        ["strace", "-f", "-y", "-e", "trace=fsync,fdatasync", "-o", str(log), *run],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr
    data = str(dirs.data)
    paths: Counter[str] = Counter()
    for found in _SYNC.finditer(log.read_text()):
        path = found["path"].replace(data, "<dir>")
        path = re.sub(r"/pods/[a-z-]+/[0-9a-f-]{36}", "/pods/<pod>", path)
        path = re.sub(r"/\.([^/]+?)\.[^./]+\.tmp$", r"/\1", path)  # atomic_write's temp name
        path = re.sub(r"/\.(sha512-[0-9a-f]+)[^/]*$", r"/\1", path)
        paths[path] += 1
    return paths


@pytest.mark.parametrize("flavor", ["container", "fly"])
def test_a_run_keeps_the_logs_durable_and_fsyncs_each_pod_directory_once(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path, flavor: str
) -> None:
    synced = _synced(shared_dirs, image, tmp_path, f"--stage1-name={flavor}")
    # Never dropped: the decision log, the event log and its checkpoint.
    assert synced["<dir>/private/decisions.jsonl"] >= 1, synced
    assert synced["<dir>/tpm/eventlog.json"] >= 1, synced
    assert synced["<dir>/tpm/eventlog.checkpoint.json"] == 1, synced
    # Every file of the pod rkt run moves on with is fsynced before its rename ...
    for name in ("private/plan.json", "private/pod", "info.json", "measurement.json"):
        assert synced[f"<dir>/pods/<pod>/{name}"] == 1, (name, synced)
    # ... and each of its directories once: private/ for the plan and the manifest, the pod
    # directory by the measurement record's write, for info.json too.
    assert synced["<dir>/pods/<pod>/private"] == 1, synced
    assert synced["<dir>/pods/<pod>"] == 1, synced
    # Only the live pod reads its /etc files: not fsynced.
    assert not [p for p in synced if "/private/etc" in p], synced

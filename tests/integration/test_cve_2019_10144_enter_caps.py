"""Regression test named after what it catches: CVE-2019-10144/10145/10147 (rkt/rkt#3998).

rkt's ``enter`` put the new process in the pod's namespaces but with every capability, no
seccomp filter and no cgroup: a process "inside" a confined app was unconfined. trustd's
entered process must look exactly like the app from inside: same bounding and effective
capabilities, Seccomp mode 2, no_new_privs, the app's cgroup and hostname.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ConfigDirs
from tests.integration.conftest import RKT, rkt
from tests.integration.test_run import status_of

RETAINED = "0000000000000400"  # CAP_NET_BIND_SERVICE only


def _execed(pidfile: Path) -> bool:
    """The app has applied its isolation and exec'd (the pid file is written before that)."""
    try:
        return Path(f"/proc/{pidfile.read_text().strip()}/comm").read_text().strip() == "sleep"
    except (OSError, ValueError):
        return False


@pytest.fixture
def running(shared_dirs: ConfigDirs, image: str) -> Iterator[str]:
    uuid_file = shared_dirs.data.parent / "uuid"
    pod = subprocess.Popen(
        [
            RKT,
            *shared_dirs.flags(),
            "run",
            f"--uuid-file-save={uuid_file}",
            image,
            "--exec=/bin/sleep",
            "--caps-retain=CAP_NET_BIND_SERVICE",
            "--",
            "60",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    uuid = ""
    while time.monotonic() < deadline:
        if uuid_file.exists() and (uuid := uuid_file.read_text().strip()):
            pid = shared_dirs.data / "pods/run" / uuid / "apps/busybox/pid"
            if pid.is_file() and _execed(pid):
                break
        time.sleep(0.05)
    assert uuid, pod.stderr.read() if pod.stderr else ""
    yield uuid
    rkt(shared_dirs, "stop", "--force", uuid)
    pod.wait(timeout=20)


def test_entered_process_is_confined_like_the_app(shared_dirs: ConfigDirs, running: str) -> None:
    app_pid = (shared_dirs.data / "pods/run" / running / "apps/busybox/pid").read_text()
    app_status = status_of(Path(f"/proc/{app_pid}/status").read_text())
    app_cgroups = Path(f"/proc/{app_pid}/cgroup").read_text()
    entered = rkt(
        shared_dirs,
        "enter",
        running,
        "/bin/sh",
        "-c",
        "cat /proc/self/status; echo ---; cat /proc/self/cgroup; echo ---; hostname",
    )
    assert entered.returncode == 0, entered.stderr
    status_text, cgroups, hostname = entered.stdout.split("---\n")
    status = status_of(status_text)
    assert status["CapBnd"] == status["CapEff"] == RETAINED == app_status["CapBnd"]
    assert status["Seccomp"] == "2" == app_status["Seccomp"]
    assert status["NoNewPrivs"] == "1"
    memory = next(line for line in app_cgroups.splitlines() if ":memory:" in line)
    assert memory in cgroups.splitlines()
    assert hostname.strip() == f"rkt-{running}"


def test_enter_needs_a_running_pod_and_root(shared_dirs: ConfigDirs, image: str) -> None:
    done = rkt(shared_dirs, "prepare", image, "--exec=/bin/true", check=True).stdout.strip()
    refused = rkt(shared_dirs, "enter", done, "/bin/true")
    assert refused.returncode == 254 and "is not running" in refused.stderr

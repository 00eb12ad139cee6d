"""The root-only executor imports the isolation code: it must not drag in network code."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = (
    "trustd.unprivileged.fetch",
    "trustd.unprivileged.discovery",
    "trustd.unprivileged.transport",
    "trustd.cli",
    "http.client",
    "urllib.request",
    "urllib3",
    "requests",
    "httpx",
    "aiohttp",
)


def test_importing_isolation_loads_no_network_code() -> None:
    # every public name, as the executor reaches them (the package loads them on first use)
    code = (
        "import json, sys; from trustd.shared.isolation import *; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    loaded = json.loads(out.stdout)
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert bad == []
    assert "trustd.shared.isolation.seccomp" in loaded
    assert "trustd.shared.isolation.caps" in loaded


def test_policy_and_fetch_paths_load_no_seccomp_tables() -> None:
    """The policy model names capabilities only; a fetch has no use for the syscall tables
    (importing them cost every ``rkt fetch`` ~30 ms, issue #12 "Benchmark")."""
    code = (
        "import json, sys, trustd.shared.policy, trustd.unprivileged.docker.fetch; "
        "from trustd.shared.isolation import CAP_NAMES; print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    loaded = json.loads(out.stdout)
    assert "trustd.shared.isolation.caps" in loaded
    assert "trustd.shared.isolation.seccomp" not in loaded
    assert "trustd.shared.isolation._syscalls" not in loaded

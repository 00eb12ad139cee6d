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
    code = "import json, sys, trustd.shared.isolation; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    loaded = json.loads(out.stdout)
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert bad == []
    assert "trustd.shared.isolation.seccomp" in loaded
    assert "trustd.shared.isolation.caps" in loaded

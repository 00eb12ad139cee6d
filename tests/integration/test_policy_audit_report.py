"""The auditor's view, end to end: ``rkt policy audit --format=html`` of a real store renders in
a real headless Chromium (Debian's ``chromium``), and ``rkt policy log verify`` checks both
decision logs, root's only as root."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ConfigDirs
from tests.integration.conftest import RKT, ensure_user, rkt
from trustd.shared.policy.log import append

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("needs Debian's chromium (make apt installs it)")
    return found


def _browse(tmp_path: Path, page: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            _chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            *flags,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
    )


def test_html_audit_renders_in_headless_chromium(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    result = rkt(shared_dirs, "policy", "audit", "--format=html", "--fail-on=never", check=True)
    page = tmp_path / "audit.html"
    page.write_text(result.stdout)
    findings = result.stdout.count('<tr class="finding"')
    assert findings > 0  # the tests' policy allows fly, any seccomp filter, every opt-out

    shot = tmp_path / "audit.png"
    shown = _browse(tmp_path, page, f"--screenshot={shot}", "--window-size=1200,1600")
    assert shown.returncode == 0, shown.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1200, 1600)
    assert len(data) > 20_000  # a blank page compresses to a few kB

    dom = _browse(tmp_path, page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = dom.stdout
    assert len(re.findall(r'<tr class="finding" data-rule="TD-POL-\d{3}">', rendered)) == findings
    assert 'id="findings-table"' in rendered
    assert "TD-POL-018" in rendered  # the fly flavor the tests' policy allows
    image_rows = re.findall(r'<tr class="image">(.*?)</tr>', rendered, re.S)
    assert len(image_rows) == 1
    assert "example.com/busybox" in image_rows[0]
    assert "ALLOW" in image_rows[0]
    assert "<script" not in rendered


def test_log_verify_checks_both_logs_root_only_as_root(shared_dirs: ConfigDirs, image: str) -> None:
    del image  # the fetch recorded a decision in the group's log
    group = shared_dirs.data / "policy/decisions.jsonl"
    root = shared_dirs.data / "private/decisions.jsonl"
    as_root = rkt(shared_dirs, "policy", "log", "verify", check=True)
    assert f"fetch log (group rkt) {group}: ok, 1 line(s)" in as_root.stdout
    assert f"run log (root) {root}:" in as_root.stdout

    user = ensure_user()
    member = subprocess.run(
        [
            "setpriv",
            f"--reuid={user}",
            "--regid=rkt",
            "--init-groups",
            "--",
            RKT,
            *shared_dirs.flags(),
            "policy",
            "log",
            "verify",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert member.returncode == 0, member.stderr
    assert f"fetch log (group rkt) {group}: ok, 1 line(s)" in member.stdout
    assert "readable by root only" in member.stdout

    append(group, {"decision": {"gate": "fetch", "image": "example.com/x", "verdict": "deny"}})
    lines = group.read_bytes().splitlines(keepends=True)
    group.write_bytes(lines[0].replace(b'"verdict":"allow"', b'"verdict":"deny"') + lines[1])
    broken = rkt(shared_dirs, "policy", "log", "verify")
    assert broken.returncode == 254
    assert f"{group}:2: BROKEN" in broken.stdout
    assert "line 1 was rewritten" in broken.stderr

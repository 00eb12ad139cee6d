"""Hints lead somewhere: the command a hint prints is run, and then the refused command works
(issue #15 part 3)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from tests.conftest import ConfigDirs

RKT = str(Path(sys.executable).with_name("rkt"))


def _rkt(dirs: ConfigDirs, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RKT, *dirs.flags(), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def _hinted_command(stderr: str, lead: str) -> list[str]:
    lines = [line.strip() for line in stderr.splitlines() if line.strip().startswith(lead)]
    assert len(lines) == 1, stderr
    return shlex.split(lines[0].removeprefix(lead))


def test_the_missing_policy_hint_installs_a_policy_that_then_loads(tmp_path: Path) -> None:
    dirs = ConfigDirs(tmp_path / "sys", tmp_path / "etc" / "not-yet" / "rkt", tmp_path / "data")
    refused = _rkt(dirs, "policy", "check")
    assert refused.returncode == 254 and "no policy" in refused.stderr
    command = _hinted_command(refused.stderr, "install the shipped default:")
    assert command[0] == "install"
    subprocess.run(command, check=True, timeout=30)
    assert (dirs.local / "policy.toml").is_file()
    again = _rkt(dirs, "policy", "check")
    assert again.returncode == 0, again.stderr
    assert f"policy {dirs.local / 'policy.toml'}: loads" in again.stdout

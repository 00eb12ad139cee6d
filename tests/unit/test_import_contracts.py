"""The import contracts are real: a deliberate violation breaks them (ADR 0010).

A copy of the package gets one forbidden import added, and ``lint-imports`` on that copy must
fail naming the contract; the unmodified copy must pass. This is the "show it once" of the
issue, kept as a test so a contract that silently stops matching is noticed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "trustd", tmp_path / "trustd", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--no-cache", "--config", str(tree / "pyproject.toml")],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("privileged/executor/run.py", "import http.client", "never loads a network client"),
        ("privileged/executor/prepare.py", "import ssl", "never loads a network client"),
        ("privileged/handlers.py", "import trustd.unprivileged.fetch", "folder line"),
        ("shared/policy/decide.py", "import trustd.privileged.pod", "folder line"),
        ("privileged/measure/measure.py", "import trustd.unprivileged.docker", "folder line"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    tree = _copy(tmp_path)
    path = tree / "trustd" / module
    path.write_text(path.read_text() + f"\n{line}  # deliberate violation\n")
    result = _lint(tree)
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in " ".join(broken.split())


def test_the_unmodified_tree_keeps_every_contract(tmp_path: Path) -> None:
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout
    assert "0 broken" in result.stdout

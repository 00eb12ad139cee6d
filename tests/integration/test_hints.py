"""Hints lead somewhere, as root and as a real member of group rkt: the hinted command is run,
and then the refused command works (issue #15 part 3)."""

from __future__ import annotations

import contextlib
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ConfigDirs
from tests.integration.conftest import RKT, ensure_user, require_root, rkt


@pytest.fixture
def base() -> Iterator[Path]:
    require_root()
    path = Path(tempfile.mkdtemp(prefix="trustd-it-hints-", dir="/tmp"))
    path.chmod(0o755)  # root's: the member may traverse it, not write in it
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _run(cmd: list[str], *, member: bool = False) -> subprocess.CompletedProcess[str]:
    prefix = ["setpriv", f"--reuid={ensure_user()}", "--regid=rkt", "--init-groups", "--"]
    return subprocess.run(
        [*(prefix if member else []), *cmd],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def _hint(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) >= 2 and lines[1].startswith("  "), stderr
    return lines[1].strip()


def _command_in(hint: str) -> list[str]:
    """The command in a hint: from ``sudo`` or ``rkt`` to the closing parenthesis or comma."""
    start = min(i for i in (hint.find("sudo "), hint.find("rkt ")) if i >= 0)
    words = shlex.split(hint[start:].split(")", maxsplit=1)[0].split(",", maxsplit=1)[0])
    return words[1:] if words[0] == "sudo" else words  # the test runs as root already


def test_a_member_of_rkt_who_cannot_create_the_data_dir_is_told_how(base: Path) -> None:
    dirs = ConfigDirs(base / "sys", base / "etc", base / "data")
    listing = [RKT, *dirs.flags(), "image", "list"]
    refused = _run(listing, member=True)
    assert refused.returncode == 254, refused.stderr
    hint = _hint(refused.stderr)
    assert "you are in group rkt" in hint and "usermod" not in hint
    fix = _command_in(hint)
    assert fix[0] == "rkt"
    done = _run([RKT if fix[0] == "rkt" else fix[0], *fix[1:]])
    assert done.returncode == 0, done.stderr
    again = _run(listing, member=True)
    assert again.returncode == 0, again.stderr


@contextlib.contextmanager
def _full_tmpfs(where: Path) -> Iterator[Path]:
    where.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(where)], check=True
    )
    try:
        with contextlib.suppress(OSError), (where / "filler").open("wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_under_dir_is_reported_as_full_not_as_permissions(base: Path) -> None:
    with _full_tmpfs(base / "full") as full:
        dirs = ConfigDirs(base / "sys", base / "etc", full / "data")
        refused = _run([RKT, *dirs.flags(), "image", "list"])
        assert refused.returncode == 254, refused.stderr
        hint = _hint(refused.stderr)
        assert "is full" in hint and "permission" not in refused.stderr
        assert f"df -h {full}" in hint
        (full / "filler").unlink()  # what the hint says: free space there
        again = _run([RKT, *dirs.flags(), "image", "list"])
        assert again.returncode == 0, again.stderr


def test_the_capability_hint_is_a_flag_that_then_runs(shared_dirs: ConfigDirs, image: str) -> None:
    """rkt printed ``to satisfy: --caps-remove=CAP_SYS_ADMIN`` for ``--caps-retain``: a flag
    that cannot be combined with it. The hinted flag now runs the app."""
    app = ["--exec=/bin/true"]
    refused = rkt(shared_dirs, "run", image, "--caps-retain=CAP_SYS_ADMIN", *app)
    assert refused.returncode == 254
    hinted = re.search(r"to satisfy: run with (--caps-(?:retain|remove)=\S+?),? or", refused.stderr)
    assert hinted, refused.stderr
    assert not hinted[1].startswith("--caps-remove")
    ran = rkt(shared_dirs, "run", image, hinted[1], *app)
    assert ran.returncode == 0, ran.stderr

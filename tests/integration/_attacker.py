"""The hostile member of group rkt, for the attack tests (DESIGN.md, issue #10).

The attacker is a real unprivileged user in group rkt (``trustd-it-user``, through setpriv),
and each attack test compares a :func:`snapshot` of what it targets before and after.
"""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

from tests._index import ENDLESS_TRIGGER
from tests.conftest import ConfigDirs
from tests.integration.conftest import RKT, ensure_user

# setpriv keeps root's capabilities through its own execvp, so a path it execs is resolved
# with CAP_DAC_READ_SEARCH: an unprivileged shell does that exec instead.
UNPRIV_EXEC = ("/bin/sh", "-c", 'exec "$@"', "sh")
INDEX = "cas/db/index.sqlite"  # the shared index, under the data dir

Snapshot = dict[str, tuple[int, int, int, bytes]]


def _as_user(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    user = ensure_user()
    return subprocess.run(
        ["setpriv", f"--reuid={user}", "--regid=rkt", "--init-groups", "--", *cmd],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def as_member(*cmd: str) -> subprocess.CompletedProcess[str]:
    """``cmd`` as the group member, exec'd by an unprivileged shell (see UNPRIV_EXEC); the
    caller looks at the outcome."""
    return _as_user([*UNPRIV_EXEC, *cmd])


def member(*cmd: str) -> subprocess.CompletedProcess[str]:
    """``cmd`` as the group member; it must succeed (the attack is made, not merely tried)."""
    result = as_member(*cmd)
    assert result.returncode == 0, result.stderr
    return result


def member_popen(*cmd: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.Popen[str]:
    """``cmd`` as the group member, in the background (stdout and stderr pipes)."""
    user = ensure_user()
    return subprocess.Popen(
        ["setpriv", f"--reuid={user}", "--regid=rkt", "--init-groups", "--", *UNPRIV_EXEC, *cmd],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Kill ``proc`` if it still runs; its output."""
    if proc.poll() is None:
        proc.kill()
    return proc.communicate(timeout=60)


def saved_uuid(path: Path) -> str:
    """The pod UUID a background ``rkt run --uuid-file-save=path`` writes, once written."""
    for _ in range(600):
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"no pod UUID in {path}")


def rkt_as_member(dirs: ConfigDirs, *args: str) -> subprocess.CompletedProcess[str]:
    """``rkt`` as the group member (rkt's interpreter sits under root-only /root here, so
    setpriv execs it; once exec'd, it holds no capability either way)."""
    return _as_user([RKT, *dirs.flags(), *args])


def snapshot(root: Path, *, skip: tuple[str, ...] = ()) -> Snapshot:
    """Every entry under ``root``: mode, owner, group, and content or link target (entries
    under ``skip`` left out; no symlink followed)."""
    out: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(root):  # never follows symlinks
        if any(Path(dirpath).is_relative_to(root / s) for s in skip):
            continue
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                body = os.fsencode(path.readlink())
            elif stat.S_ISREG(st.st_mode):
                body = path.read_bytes()
            else:
                body = b""
            out[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, body)
    return out


_PLANT_TRIGGER = (
    "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
    "c.execute(sys.argv[2]); print('ENDLESS')"
)


def plant_endless_trigger(dirs: ConfigDirs, event: str) -> None:
    """As the member: :data:`tests._index.ENDLESS_TRIGGER` on ``event`` of the shared
    index's images."""
    sql = ENDLESS_TRIGGER.format(event=event, when="")
    made = member("/usr/bin/python3", "-c", _PLANT_TRIGGER, str(dirs.data / INDEX), sql)
    assert made.stdout.strip() == "ENDLESS"


def rkt_unhung(dirs: ConfigDirs, *args: str, within: float) -> subprocess.CompletedProcess[str]:
    """``rkt args`` as root, which must end within ``within`` seconds: a bound on a hang the
    attack aims at (never a speed claim), failing the test by name when it does not end."""
    try:
        return subprocess.run(
            [RKT, *dirs.flags(), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=within,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"rkt {' '.join(args[:2])} hung on what the member planted") from exc

"""Second red-team pass: attacks on the root boundary that WORK on the code under review.

Each test makes the attack as the real unprivileged user in group rkt (through an
unprivileged ``/bin/sh``), then runs the ordinary root command and asserts what a fixed
trustd must guarantee. They FAIL today; each docstring says what is wrong and the fix.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ConfigDirs
from tests.integration._attacker import member
from tests.integration.conftest import RKT, require_root, rkt

GENESIS = "0" * 64


def _root_rkt(dirs: ConfigDirs, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [RKT, *dirs.flags(), *args], capture_output=True, check=False, timeout=120
    )


def test_policy_log_verify_prints_no_terminal_control_bytes_from_the_groups_log(
    shared_dirs: ConfigDirs,
) -> None:
    """A member writes a well-chained line to the group's fetch log whose ``image`` holds
    ESC/BEL sequences (set the window title, clear the screen, ``ESC[8m`` conceal: what
    follows, root's own run-log verdict, is invisible on most terminals). Root runs
    ``rkt policy log verify`` and its terminal receives them raw: the summary of the last
    decision (``LogCheck.describe``, ``_summary``) prints attacker strings unescaped.

    Fix: escape C0/C1 controls (and DEL) in every string taken from the logs (and, in
    general, from the group-writable index: ``image list`` names) before printing; e.g.
    ``repr``-style escapes for ``not ch.isprintable()``."""
    require_root()
    assert _root_rkt(shared_dirs, "image", "list").returncode == 0  # makes <dir>/policy
    evil = "\x1b]0;owned\x07\x1b[2J\x1b[8mFAKE"
    line = json.dumps(
        {
            "decision": {"gate": "fetch", "image": evil, "verdict": "allow", "scope": "x"},
            "prev": GENESIS,
            "seq": 0,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    log = shared_dirs.data / "policy" / "decisions.jsonl"
    member("/bin/sh", "-c", f"printf '%s\\n' '{line}' > {log}")
    out = _root_rkt(shared_dirs, "policy", "log", "verify")
    printed = out.stdout + out.stderr
    assert b"\x1b" not in printed and b"\x07" not in printed, printed


def test_policy_log_verify_reads_a_bounded_amount_of_the_groups_log(
    shared_dirs: ConfigDirs,
) -> None:
    """A member makes the group's fetch log a sparse file (``truncate -s``: no disk used).
    Root's ``rkt policy log verify`` reads the whole file into memory (``log_verify._read``
    has no cap, and ``split`` copies it again): 256 MiB here costs root > 500 MiB of RSS; a
    ``truncate -s 1T`` makes root's verify exhaust memory (OOM killer) or run for hours.

    Fix: stream the log line by line with a per-line cap (``MAX_LINE``, as the appender has)
    and a total-size cap, or refuse a file larger than a documented limit."""
    require_root()
    assert _root_rkt(shared_dirs, "image", "list").returncode == 0
    log = shared_dirs.data / "policy" / "decisions.jsonl"
    member("/usr/bin/truncate", "-s", "256M", str(log))
    proc = subprocess.Popen(
        [RKT, *shared_dirs.flags(), "policy", "log", "verify"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0  # reaped above
    peak_kib = usage.ru_maxrss
    assert peak_kib < 128 * 1024, f"root's verify peaked at {peak_kib} KiB"


@pytest.fixture
def root_only() -> Iterator[Path]:
    """A root-only directory (0700 root:root), standing for /etc."""
    base = Path(tempfile.mkdtemp(prefix="trustd-red2-victim-", dir="/tmp"))
    base.chmod(0o700)
    yield base
    subprocess.run(["rm", "-rf", str(base)], check=False)


@pytest.fixture
def sticky_tmp() -> Iterator[Path]:
    """A world-writable sticky directory like /tmp."""
    base = Path(tempfile.mkdtemp(prefix="trustd-red2-sticky-", dir="/tmp"))
    base.chmod(0o1777)
    yield base
    subprocess.run(["rm", "-rf", str(base)], check=False)


def test_root_output_never_writes_through_a_symlinked_parent_directory(
    shared_dirs: ConfigDirs, image: str, root_only: Path, sticky_tmp: Path
) -> None:
    """The first fix (trustd/privileged/_output.py) opens ``path.parent`` *following*
    symlinks and checks only the directory it lands in. A member plants
    ``/tmp/exports -> /etc`` (any directory root owns); root runs ``rkt image export
    --overwrite ID /tmp/exports/ld.so.preload`` and replaces the root-owned file in the
    directory the member chose: the parent resolves to a root-owned 0700 directory, so the
    check passes, and the rename lands there. Same for ``rkt export``, ``--uuid-file-save``,
    ``attest ak/quote --out`` and ``image render/extract DEST`` (output_dir).
    (fs.protected_symlinks=0 here; with 1, any non-sticky ancestor a user can write, e.g. a
    home directory, does the same.)

    Fix: resolve the parent with ``openat2(RESOLVE_NO_SYMLINKS)`` (or walk it component by
    component with O_NOFOLLOW), refusing every ancestor that another user owns or can write
    (as the data dir's ancestors are checked)."""
    victim = root_only / "ld.so.preload"
    victim.write_bytes(b"")
    link = sticky_tmp / "exports"
    member("/bin/ln", "-s", str(root_only), str(link))
    rkt(shared_dirs, "image", "export", "--overwrite", image, str(link / "ld.so.preload"))
    rkt(shared_dirs, "image", "export", image, str(link / "new.aci"))
    assert sorted(p.name for p in root_only.iterdir()) == ["ld.so.preload"]
    assert victim.read_bytes() == b"", "root replaced a file in the directory a member chose"


def test_root_image_list_prints_no_terminal_control_bytes_from_the_index(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """The index is the group's; ``_index._row`` checks the key and digest but takes ``name``
    (and ``source``, label values) as any string. A member renames a row to one holding
    ``ESC[8m`` (conceal) or cursor moves; root's ``rkt image list`` prints it raw, so root's
    terminal hides or rewrites the rows after it (or sets its title, etc.).

    Fix: refuse a row whose name is not an AC Identifier (as the manifest's is), and escape
    control characters in everything printed from the index."""
    db = shared_dirs.data / "cas/db/index.sqlite"
    member(
        "/usr/bin/sqlite3",
        str(db),
        "UPDATE images SET name = 'example.com/x' || char(27) || '[8m' || char(27) || ']0;t'"
        " || char(7)",
    )
    out = _root_rkt(shared_dirs, "image", "list")
    printed = out.stdout + out.stderr
    assert b"\x1b" not in printed and b"\x07" not in printed, printed

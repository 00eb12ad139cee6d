"""Second red-team pass: attacks on the root boundary that worked on the code it reviewed.

Each test makes the attack as the real unprivileged user in group rkt (through an
unprivileged ``/bin/sh``), then runs the ordinary root command and asserts what trustd
guarantees. All were fixed after the review: outputs are reached by a checked walk from
``/`` (trustd/privileged/_output.py), what group members wrote is printed with its control
characters escaped (trustd.shared.errors.printable), and the log verifier reads at most
64 MiB. Each docstring still says what was wrong, so the hole stays closed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ConfigDirs
from tests.integration._attacker import member
from tests.integration.conftest import RKT, ensure_user, require_root, rkt

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


_PEAK_RSS = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(os.wait4(child.pid, 0)[2].ru_maxrss)
"""


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
    # A child's ru_maxrss counts the memory of the process it was forked from (the kernel
    # carries the high-water mark across exec), so measure from a small interpreter, not
    # from pytest's large one.
    measured = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            _PEAK_RSS,
            RKT,
            *shared_dirs.flags(),
            "policy",
            "log",
            "verify",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    peak_kib = int(measured.stdout)
    assert peak_kib < 128 * 1024, f"root's verify peaked at {peak_kib} KiB"


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
    """The index is the group's; ``_rows._row`` checks the key and digest but takes ``name``
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


def _blob(dirs: ConfigDirs, image_id: str) -> Path:
    key = image_id[: len("sha512-") + 64]
    return dirs.data / "cas/blob/sha512" / key[7:9] / key / "image.aci"


_SWAP = r"""
import os, shutil, sys, time
m, victim, blob = sys.argv[1], sys.argv[2], sys.argv[3]
new = os.path.join(m, "new")
stage = os.path.join(m, "stage")  # the member's stand-in: the genuine archive, and a link
os.makedirs(os.path.join(stage, "unpacked"))
shutil.copyfile(blob, os.path.join(stage, "image.aci"))
os.symlink(victim, os.path.join(stage, "unpacked", "rootfs"))
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        names = [n for n in os.listdir(new) if n.startswith(".trustd-render-")]
    except OSError:
        names = []
    if names:
        work = os.path.join(new, names[0])
        first = os.stat(work).st_mtime_ns
        until = time.monotonic() + 0.005
        while os.stat(work).st_mtime_ns == first and time.monotonic() < until:
            pass  # root creates its copy (image.aci) in the 0700 dir: its mtime moves
        os.rename(new, os.path.join(m, "old"))  # same parent: no write on the moved dir needed
        os.mkdir(new)
        os.rename(stage, work)
        print("swapped", names[0])
        sys.exit(0)
    time.sleep(0.0002)
sys.exit("no render stage appeared")
"""


def test_image_extract_under_a_members_directory_never_writes_outside_dest(
    shared_dirs: ConfigDirs, image: str, root_only: Path, sticky_tmp: Path
) -> None:
    """``rkt image extract ID DEST`` (render.py ``render_image``) runs
    ``dest.parent.mkdir(parents=True)`` *before* ``check_parent``: for DEST =
    ``~member/out/new/dest`` root creates ``new`` itself (root-owned 0755), so the check of
    DEST's parent passes although ``out`` is the member's. The staging dir
    ``.trustd-render-*`` sits in ``new`` and every later step (the private copy, readmit,
    ``_extract``'s ``tarfile.extractall(work/unpacked, filter="fully_trusted")``) uses
    *paths* through ``out``. The member lists ``new`` (0755), renames it aside (same
    parent: allowed) and puts its own ``new/.trustd-render-XXX/unpacked/rootfs -> /``:
    root's genuine copy verifies, then tarfile writes the image's ``rootfs/...`` through the
    link. Here ``rootfs -> <a root-only dir>``: the image's ``bin/busybox`` lands there (and
    its directories are chmod'ed); with ``-> /`` an image's ``etc/passwd`` replaces the
    host's. Root then refuses the final move ("will not write into"), too late.

    Fix: never mkdir ancestors as root; resolve dest.parent once to an fd (every ancestor
    root's and not writable by others, no symlinks) and do all staging and extraction
    relative to fds (or in ``<dir>/private``, then move with renameat); never re-open the
    verified copy by path."""
    victim = root_only
    (victim / "bin").mkdir()
    (victim / "bin/busybox").write_bytes(b"host binary")
    out = sticky_tmp / "out"
    member("/bin/mkdir", "-m", "0755", str(out))
    user_dir_attacker = subprocess.Popen(
        [
            "setpriv",
            f"--reuid={ensure_user()}",
            "--regid=rkt",
            "--init-groups",
            "--",
            "/bin/sh",
            "-c",
            'exec /usr/bin/python3 -I -c "$0" "$@"',
            _SWAP,
            str(out),
            str(victim),
            str(_blob(shared_dirs, image)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        import time  # noqa: PLC0415

        time.sleep(0.5)
        rkt(shared_dirs, "image", "extract", image, str(out / "new" / "dest"))
        swapped = user_dir_attacker.communicate(timeout=90)
    finally:
        user_dir_attacker.kill()
    assert (victim / "bin/busybox").read_bytes() == b"host binary", (
        f"root extracted the image through a member's link ({swapped})"
    )
    assert sorted(p.name for p in victim.iterdir()) == ["bin"]

"""Eighth red-team pass: ways around red team 7's bounds on what root's side reads of the
group's store (2026-12-03), attacked as a real member of group rkt (``trustd-it-user``,
through an unprivileged ``/bin/sh``).

Each test makes the attack, then asserts what trustd guarantees, counting outcomes (never
timing them; a timeout only turns a hang into a failure). The docstrings say what was wrong.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests._aci import build_aci
from tests.conftest import ConfigDirs
from tests.integration._attacker import member, member_popen, rkt_as_member, rkt_unhung, stop
from tests.integration.conftest import RKT, rkt
from trustd.unprivileged.privsep import fetch_identity


def _blob_dir(dirs: ConfigDirs) -> Path:
    (found,) = (dirs.data / "cas/blob/sha512").glob("*/sha512-*")
    return found


def _plant(dirs: ConfigDirs, sql: str) -> None:
    """As the member: ``sql`` run on the group's index."""
    script = (
        "import sqlite3, sys\n"
        "sqlite3.connect(sys.argv[1], isolation_level=None).execute(sys.argv[2])"
    )
    member("/usr/bin/python3", "-c", script, str(dirs.data / "cas/db/index.sqlite"), sql)


def _verb(dirs: ConfigDirs, image: str, verb: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return rkt_unhung(dirs, *(verb if "gc" in verb else (*verb, image)), within=400)


def _image_kept(dirs: ConfigDirs, image: str) -> None:
    assert (_blob_dir(dirs) / "image.aci").is_file()
    listed = rkt(dirs, "image", "list", "--no-legend", "--full")
    assert image in listed.stdout


# As the member: hold ``argv[1]``'s flock (``argv[2]``: LOCK_SH or LOCK_EX) until killed.
_HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, getattr(fcntl, sys.argv[2]))
print("held", flush=True)
time.sleep(3600)
"""


def _hold_lock(path: Path, operation: str) -> subprocess.Popen[str]:
    holder = member_popen("/usr/bin/python3", "-c", _HOLD, str(path), operation)
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held", stop(holder)
    return holder


# Few steps, each heavy: a value of SIZE bytes drawn per row of an endless recursion.
_HEAVY = """
CREATE TRIGGER heavy BEFORE DELETE ON images BEGIN
  SELECT sum(length(randomblob(SIZE))) FROM (WITH RECURSIVE n(i) AS (
    SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i FROM n);
END"""

_VERBS = [("image", "rm"), ("image", "gc", "--grace-period=0s")]


@pytest.mark.parametrize(
    ("size", "reason"), [(100_000_000, "too big"), (4_000_000, "s of CPU")], ids=["100M", "4M"]
)
@pytest.mark.parametrize("verb", _VERBS, ids=["rm", "gc"])
def test_a_trigger_of_heavy_steps_cannot_hang_image_rm_or_gc(
    shared_dirs: ConfigDirs, image: str, verb: tuple[str, ...], size: int, reason: str
) -> None:
    """Red team 7's budget counts SQLite steps, and one ``randomblob(100000000)`` is one step
    of ~0.2 s: a trigger drawing one per row of an endless recursion ran for years within
    it, so ``rkt image rm`` and ``gc`` (whose child has no deadline) hung for good. No value
    may now be larger than the index needs, and the connection's CPU time is budgeted too:
    the verb is refused with the reason, and the image is still there."""
    _plant(shared_dirs, _HEAVY.replace("SIZE", str(size)))
    refused = _verb(shared_dirs, image, verb)
    assert refused.returncode == 254, refused.stderr
    assert reason in refused.stderr, refused.stderr
    _image_kept(shared_dirs, image)


# One step SQLite cannot interrupt: replace() compares the pattern at every offset (O(n*m)),
# ~2 minutes for one call at the index's value limit; the recursion makes calls for ever.
_QUADRATIC = """
CREATE TRIGGER quadratic BEFORE DELETE ON images BEGIN
  SELECT sum(length(replace(printf('%.*c', 4000000, 'a'), printf('%.*c', 2000000, 'a') || 'b',
    ''))) FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i FROM n);
END"""


def test_a_step_sqlite_cannot_interrupt_ends_at_the_childs_deadline(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """Neither budget is looked at inside one step, and replace() of a 4 MB value with a 2 MB
    pattern is one step of minutes: ``rkt image rm``'s child, which root waited for with no
    bound, hung for good. Every store child now has a deadline; past it root kills the
    child and refuses (or the CPU budget stops it, if the step ends first), and the image is
    still there."""
    _plant(shared_dirs, _QUADRATIC)
    refused = _verb(shared_dirs, image, ("image", "rm"))
    assert refused.returncode == 254, refused.stderr
    # the deadline, or the CPU budget once the step ends on a machine fast enough
    assert any(r in refused.stderr for r in ("did not answer within", "s of CPU")), refused.stderr
    _image_kept(shared_dirs, image)


def test_a_store_lock_a_member_holds_cannot_hang_image_gc(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """``image gc``'s child takes ``cas/lock`` exclusively, and the lock file is the group's:
    a member's ``flock -s cas/lock sleep`` made root's gc wait for it for ever. The lock is
    now waited for a bounded time (and the child has a deadline besides): gc is refused,
    naming the lock; the image is still there."""
    holder = _hold_lock(shared_dirs.data / "cas/lock", "LOCK_SH")
    try:
        refused = _verb(shared_dirs, image, ("image", "gc", "--grace-period=0s"))
    finally:
        stop(holder)
    assert refused.returncode == 254, refused.stderr
    assert "cas/lock" in refused.stderr, refused.stderr
    _image_kept(shared_dirs, image)


def test_a_store_lock_a_member_holds_cannot_hang_rkt_fetch(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    """Root's ``rkt fetch`` opens the store in its fetch child, which takes ``cas/lock``
    (exclusively to create the schema, shared to publish): a member's ````flock -s`` (or
    ``-x``) on the group's lock file made the fetch wait for ever, and a fetch has no
    deadline (a download may take long). The store's locks are now waited for a bounded
    time; the fetch is refused naming the lock."""
    holder = _hold_lock(shared_dirs.data / "cas/lock", "LOCK_EX")
    try:
        refused = _verb(shared_dirs, str(tmp_path / "bb.aci"), ("fetch", "--full"))
    finally:
        stop(holder)
    assert refused.returncode == 254, refused.stderr
    assert "cas/lock" in refused.stderr, refused.stderr
    _image_kept(shared_dirs, image)


# An annotation whose value drives a terminal by C1 controls (CSI: clear the screen; OSC: set
# the title) and reorders it (a bidi override).
_C1_NOTE = {"name": "example.com/note", "value": "\u009b2J\u009d0;pwned\u009c \u202eevil"}


def test_cat_manifest_prints_no_terminal_control_characters_from_the_store(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """``rkt image cat-manifest`` prints the manifest of an image a member fetched (its own,
    unsigned: the store is the group's) with ``json.dumps(ensure_ascii=False)``: that
    escapes C0 controls but printed C1 ones (CSI, OSC) and bidi overrides raw on root's
    terminal, where the threat model says what the group wrote is printed escaped. They are
    now ``\\u``-escaped (the JSON value is the same)."""
    aci = build_aci(
        shared_dirs.system.parent / "c1.aci", "example.com/c1", extra={"annotations": [_C1_NOTE]}
    )
    aci.chmod(0o644)
    fetched = rkt_as_member(shared_dirs, "--insecure-options=image", "fetch", "--full", str(aci))
    assert fetched.returncode == 0, fetched.stderr
    shown = rkt(shared_dirs, "image", "cat-manifest", fetched.stdout.strip().splitlines()[-1])
    assert shown.returncode == 0, shown.stderr
    for c in ("\u009b", "\u009d", "\u009c", "\u202e"):
        assert c not in shown.stdout + shown.stderr, repr(shown.stdout)
    assert "\\u009b2J" in shown.stdout  # shown, escaped


_FORGE_EXEC = r"""
import json, os, sys
path = sys.argv[1]
with open(path, "rb") as f:
    doc = json.load(f)
doc["app"]["exec"] = ["/bin/sh", "-c", "echo forged by the group"]
with open(path + ".x", "w") as f:
    json.dump(doc, f)
os.replace(path + ".x", path)
"""


def test_cat_manifest_shows_the_manifest_of_the_images_own_bytes(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """A member rewrites the stored ``manifest`` (the app's exec, its isolators); root's
    ``rkt image cat-manifest ID`` showed the forgery as the image's, with no word that it was
    unverified (``rkt run`` was not fooled: root re-reads the manifest from the re-hashed
    archive, but the operator deciding what to run was). The manifest is now read from the
    archive in the pass that hashes it, and shown only when that is the image's ID."""
    member("/usr/bin/python3", "-c", _FORGE_EXEC, str(_blob_dir(shared_dirs) / "manifest"))
    shown = rkt(shared_dirs, "image", "cat-manifest", image)
    assert shown.returncode == 0, shown.stderr
    assert "forged by the group" not in shown.stdout
    assert '"exec"' in shown.stdout  # the image's own app is shown


def _fetch_identity_pids() -> set[int]:
    """Live processes whose real uid is the fetch identity's."""
    uid, found = fetch_identity().uid, set()
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            line = next(x for x in status.read_text().splitlines() if x.startswith("Uid:"))
            if int(line.split()[1]) == uid:
                found.add(int(status.parent.name))
    return found


def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` (an event, not a speed: the bound only ends a test that fails)."""
    for _ in range(600):
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(what)


def test_the_store_child_dies_with_roots_rkt(shared_dirs: ConfigDirs, image: str) -> None:
    """Root's ``rkt image rm`` waits for its child, which runs as the fetch identity; killed
    (``kill -9``, an operator's Ctrl-C on a hung verb), root's ``rkt`` left the child running:
    it went on waiting for the member's lock, or computing their trigger, holding the index
    for the next command. The child now asks to be killed when its parent dies (set after the
    drop, which clears it)."""
    holder = _hold_lock(shared_dirs.data / "cas/lock", "LOCK_SH")
    before = _fetch_identity_pids()
    try:
        rm = subprocess.Popen(
            [RKT, *shared_dirs.flags(), "image", "rm", image],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _until(lambda: bool(_fetch_identity_pids() - before), "the store child never started")
        children = _fetch_identity_pids() - before
        rm.kill()
        rm.wait()
        _until(lambda: not (children & _fetch_identity_pids()), "the child outlived rkt")
    finally:
        stop(holder)
    _image_kept(shared_dirs, image)

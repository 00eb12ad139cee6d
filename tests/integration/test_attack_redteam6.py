"""Sixth red-team pass: what landed on main on 2026-12-02 (gc by directory fds, ``rkt image
list`` dropping in place for good, the lookup child's warnings relayed in its answer, the one
index transaction of ``rkt run``), attacked as a real member of group rkt
(``trustd-it-user``, through an unprivileged ``/bin/sh``).

Each test makes the attack, then asserts what trustd guarantees, counting outcomes (never
timing them). The docstrings say what was wrong where a hole was found.
"""

from __future__ import annotations

from tests.conftest import ConfigDirs
from tests.integration._attacker import member
from tests.integration.conftest import rkt

ESC = "\x1b"
# An unknown provenance field whose name clears root's screen, retitles its terminal and
# starts a line of its own that reads like trustd's.
_FIELD = ESC + "[2J" + ESC + "]0;owned" + "\x07" + "\nrun: signature verified by root's key"


def _sql(dirs: ConfigDirs, statement: str, *params: str) -> None:
    """``statement`` on the shared index, as the member, with ``?`` parameters."""
    script = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
        "c.execute(sys.argv[2], sys.argv[3:])"
    )
    db = str(dirs.data / "cas/db/index.sqlite")
    member("/usr/bin/python3", "-c", script, db, statement, *params)


def _forged_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("run: signature verified")]


def test_a_hostile_provenance_field_name_is_printed_escaped_by_image_list(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """Root's ``rkt image list`` drops to the fetch identity in its own process and lists
    there; a row whose provenance the decoder refuses is skipped with a warning. That warning
    went to root's terminal as the decoder wrote it, and the decoder names the unknown field
    as stored: a member's field name drove root's terminal (escape sequences) and printed a
    line of its own. The warning is now printed with control characters escaped."""
    provenance = '{"signers": [], "insecure": false, "verified_at": "x", "%s": 1}'
    _sql(
        shared_dirs,
        "UPDATE images SET provenance = ? WHERE key = ?",
        provenance % _FIELD.encode("unicode-escape").decode().replace("\\x", "\\u00"),
        image[:71],
    )
    listed = rkt(shared_dirs, "image", "list")
    assert listed.returncode == 0, listed.stderr
    assert "unknown field" in listed.stderr  # the row was met and refused
    assert ESC not in listed.stderr and "\x07" not in listed.stderr
    assert not _forged_lines(listed.stderr), listed.stderr


def test_a_trigger_raising_an_escape_sequence_is_printed_escaped_by_run(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """The lookup child stamps the image's last use in the group's index; a trigger the
    member made there aborts that update with a message of the member's choosing. The error
    crossed back to root, which printed it (``run: store index ...: <message>``) as written:
    the member drove root's terminal. Root's error report now escapes control characters in
    each line of a message and hint."""
    message = _FIELD.replace("'", "")
    _sql(
        shared_dirs,
        f"CREATE TRIGGER stamp BEFORE UPDATE ON images BEGIN SELECT RAISE(ABORT, '{message}'); END",
    )
    refused = rkt(shared_dirs, "run", "--net=none", "--stage1-name=fly", image)
    assert refused.returncode == 254
    assert "owned" in refused.stderr  # the trigger's message was met
    assert ESC not in refused.stderr and "\x07" not in refused.stderr
    assert not _forged_lines(refused.stderr), refused.stderr

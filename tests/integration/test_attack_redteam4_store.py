"""Fourth red-team pass, the store side: last session's speed-ups (the index-only lookup child
of ``rkt run``, the one-pass fetch, the render lock, the policy cache, the squash accounting),
attacked as a real member of group rkt (``trustd-it-user``, through an unprivileged
``/bin/sh``).

Each test makes the attack, then asserts what trustd guarantees, counting outcomes (never
timing them). The docstrings say what was wrong where a hole was found.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

from tests._busybox import busybox_aci
from tests.conftest import ConfigDirs, Keys
from tests.integration._attacker import member
from tests.integration.conftest import NAME, rkt
from trustd.shared.config import Dirs, GlobalOptions
from trustd.shared.errors import TrustdError
from trustd.unprivileged.privsep import fetch_identity, run_as
from trustd.unprivileged.privsep.drop import INDEX_PRELOAD

# The member replaces the index's table by a view of the other image's row whose key is a
# fresh random choice each time SQLite evaluates it: three times in the prefix query's WHERE,
# once for the answer. So the victim's prefix matches and the row answered is the other
# image's (key and digest consistent, so the fetch side's row check passes). INSTEAD OF
# triggers keep the lookup child's stamping from failing on the view.
_VIEW = r"""
import sqlite3, sys
db, victim_key, other_key = sys.argv[1:]
c = sqlite3.connect(db, isolation_level=None)
cols = "digest, name, labels, import_time, last_used, size, uncompressed_size, source, provenance"
c.executescript(f'''
ALTER TABLE images RENAME TO images_real;
CREATE VIEW images AS SELECT
  CASE WHEN abs(random()) % 4 < 3 THEN '{victim_key}' ELSE key END AS key, {cols}
  FROM images_real WHERE key = '{other_key}';
CREATE TRIGGER images_u INSTEAD OF UPDATE ON images BEGIN SELECT 1; END;
CREATE TRIGGER images_i INSTEAD OF INSERT ON images BEGIN SELECT 1; END;
CREATE TRIGGER images_d INSTEAD OF DELETE ON images BEGIN SELECT 1; END;
''')
print("VIEW")
"""
TRIES = 150  # each lookup answers the other image with probability (3/4)^3 / 4 = 0.105


def _other_image(dirs: ConfigDirs, keys: Keys, tmp_path: Path) -> str:
    other = busybox_aci(tmp_path / "other.aci", "example.com/other")
    keys.gpg.sign(keys.good, other, tmp_path / "other.aci.asc")
    out = rkt(dirs, "fetch", "--full", str(other), "--signature", str(tmp_path / "other.aci.asc"))
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize("schema_script", ["run at every open", "skipped"])
def test_a_view_in_the_index_cannot_answer_another_image_for_an_id_prefix(
    shared_dirs: ConfigDirs,
    image: str,
    keys: Keys,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    schema_script: str,
) -> None:
    """``rkt run``/``prepare``/``image`` by an ID prefix took whatever full ID the index
    lookup child answered (checked against the ID grammar, and on the fetch side that the
    row's key is its digest's first half); the prefix match was SQLite's alone. A member who
    swaps the table for a view whose key column is random gets about one lookup in ten to
    answer another signed image, which root would run in place of the one asked for. Today
    only an accident stops it: every open runs the schema script, whose ``CREATE INDEX IF
    NOT EXISTS`` fails on a view ("views may not be indexed"). With that script skipped
    (``skipped``: as an open made faster would, forked into the lookup child) the attack
    worked. Now root checks that the answered ID starts with the prefix asked for: each
    lookup is the right image or a refusal naming the index, either way."""
    from trustd.cli._store import full_key, run_keys  # noqa: PLC0415
    from trustd.shared.store._index import Index  # noqa: PLC0415

    if schema_script == "skipped":
        monkeypatch.setattr(Index, "create", lambda self: None)

    other = _other_image(shared_dirs, keys, tmp_path)
    prefix = image[:19]
    assert not other.startswith(prefix)
    db = shared_dirs.data / "cas/db/index.sqlite"
    made = member("/usr/bin/python3", "-c", _VIEW, str(db), image[:71], other[:71])
    assert made.stdout.strip() == "VIEW"
    options = GlobalOptions(
        Dirs(
            system_config=shared_dirs.system, local_config=shared_dirs.local, data=shared_dirs.data
        )
    )
    outcomes: dict[str, int] = {"right": 0, "other": 0, "refused": 0}
    for i in range(TRIES):
        try:
            if i % 2:
                got = run_keys(options, [prefix], None)[0].get(prefix)
                answer = got.id if got else None
            else:
                answer = full_key(options, prefix, touch=True).id
        except TrustdError:  # the index's error, the row check's, or root's
            outcomes["refused"] += 1
            continue
        if answer is None:  # the child stopped at the prefix: no image IDs found
            outcomes["refused"] += 1
        else:  # fetch --full prints the store key, the full ID's first half
            outcomes["right" if answer.startswith(image) else "other"] += 1
    assert outcomes["other"] == 0, outcomes
    assert outcomes["refused"] > 0, outcomes  # the view was live: the lookups met it


# The member adds a row whose key shares the image's first 19 characters but is not its
# digest's first half: a row the index check refuses.
_DAMAGED = r"""
import sqlite3, sys
db, key = sys.argv[1:]
c = sqlite3.connect(db, isolation_level=None)
row = list(c.execute("SELECT * FROM images WHERE key = ?", (key,)).fetchone())
row[0] = key[:-4] + ("0000" if not key.endswith("0000") else "1111")
c.execute("INSERT INTO images VALUES (?,?,?,?,?,?,?,?,?,?)", row)
print("DAMAGED")
"""


def test_a_damaged_index_row_is_skipped_with_a_warning_the_user_sees(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """A row the index check refuses is skipped with a warning. The lookup child used to
    print that warning itself, on a stderr it may not be able to write (closed in the child:
    EBADF, and the run failed with "fetch process failed"). Now the child hands the warning
    back in its answer and root prints it; the run goes on with the one good row."""
    db = shared_dirs.data / "cas/db/index.sqlite"
    made = member("/usr/bin/python3", "-c", _DAMAGED, str(db), image[:71])
    assert made.stdout.strip() == "DAMAGED"
    for ref in (image[:19], NAME):  # the prefix lookup and the name lookup both meet it
        out = rkt(shared_dirs, "run", "--net=none", "--stage1-name=fly", ref)
        assert out.returncode == 0, out.stderr
        warnings = [line for line in out.stderr.splitlines() if "row refused" in line]
        assert warnings, out.stderr  # once per lookup that met the row
        assert "fetch process failed" not in out.stderr


def test_the_lookup_child_never_writes_roots_stderr() -> None:
    """What the index lookup child writes to stderr crosses back in its answer: with its
    fd 2 closed the work still answers, and the parent prints the line, control characters
    escaped (the group may have written them into a row)."""

    def work() -> str:
        os.close(2)
        print("warning: store index row refused: \x1b[2J", file=sys.stderr)
        return "answered"

    seen = io.StringIO()
    real, sys.stderr = sys.stderr, seen
    try:
        answer = run_as(fetch_identity(), work, inherit_fds=False, base=INDEX_PRELOAD)
    finally:
        sys.stderr = real
    assert answer == "answered"
    assert seen.getvalue() == "warning: store index row refused: \\x1b[2J\n"

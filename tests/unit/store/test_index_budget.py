"""The store index's step budget: the group writes the index, so a member's trigger whose
body never ends runs inside root's child's statement (``image rm``'s DELETE, a fetch's
INSERT, a lookup's last-use stamp). Every connection is given a budget of SQLite VM steps;
past it the statement is interrupted, rolled back, and the operation refused with the reason.
The budget is lowered here so the endless trigger is stopped in a fraction of a second; the
attack at the real budget, as a member, is in tests/integration/test_attack_redteam7.py."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests._index import ENDLESS_TRIGGER, fake_index, last_used
from tests._index import short_key as _key
from trustd.shared.errors import LocalStateError
from trustd.shared.store import _index as index_module
from trustd.shared.store._index import Index


def _index(tmp_path: Path, images: int, trigger_on: str | None = None) -> Index:
    sql = ENDLESS_TRIGGER.format(event=trigger_on, when="") if trigger_on else None
    return fake_index(tmp_path, images, trigger=sql)


@pytest.fixture
def small_budget(monkeypatch: pytest.MonkeyPatch) -> int:
    steps = 1 << 24  # ~0.2 s of the endless recursion
    monkeypatch.setattr(index_module, "MAX_INDEX_STEPS", steps)
    return steps


def test_an_endless_trigger_on_delete_is_stopped_and_the_row_kept(
    tmp_path: Path, small_budget: int
) -> None:
    index = _index(tmp_path, 3, trigger_on="DELETE")
    before = last_used(index)
    with pytest.raises(LocalStateError) as refused:
        index.delete(_key(1))
    assert f"ran past {small_budget} SQLite steps" in refused.value.message
    assert "trigger" in refused.value.hint
    assert last_used(index) == before


def test_an_endless_trigger_on_a_stamp_rolls_back_the_whole_session(
    tmp_path: Path, small_budget: int
) -> None:
    """The first stamps of the session succeed before the trigger-bearing row is met (the
    trigger is on UPDATE of one key only); the refusal rolls all of them back."""
    index = _index(tmp_path, 3)
    with sqlite3.connect(index.path) as conn:
        conn.execute(ENDLESS_TRIGGER.format(event="UPDATE", when=f"WHEN old.key = '{_key(2)}'"))
    before = last_used(index)
    with pytest.raises(LocalStateError, match="SQLite steps"), index.session():
        for n in range(3):
            index.touch(_key(n))
    assert last_used(index) == before
    index.touch(_key(0))  # a new connection has a budget of its own
    assert last_used(index)[_key(0)] != "never"


def test_the_budget_is_far_above_what_a_large_listing_takes(tmp_path: Path) -> None:
    """Listing 10,000 images counts its steps against the real budget: under 1/100 of it, so
    only a runaway statement meets the limit."""
    index = _index(tmp_path, 10_000)
    steps = [0]
    with sqlite3.connect(index.path) as conn:

        def tick() -> int:
            steps[0] += 1
            return 0

        conn.set_progress_handler(tick, 1000)
        assert len(conn.execute("SELECT * FROM images").fetchall()) == 10_000
    assert steps[0] * 1000 < index_module.MAX_INDEX_STEPS // 100, steps[0]

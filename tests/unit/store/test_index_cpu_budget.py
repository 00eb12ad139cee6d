"""The store index's CPU budget (red team 8): SQLite steps are not all alike, so a trigger
whose every step is heavy (``randomblob(100000000)``, ~0.2 s) ran for years within the step
budget of :mod:`test_index_budget`. No value may now be larger than the index needs, and the
connection's CPU time is budgeted too; past it the statement is interrupted and rolled back.
The CPU budget is lowered here; the attack as a member is in
tests/integration/test_attack_redteam8.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._index import fake_index, last_used
from tests._index import short_key as _key
from trustd.shared.errors import LocalStateError
from trustd.shared.store import _index as index_module

# Each row of the endless recursion draws a value as large as the index allows.
_HEAVY = """
CREATE TRIGGER heavy BEFORE DELETE ON images BEGIN
  SELECT sum(length(randomblob({size}))) FROM (WITH RECURSIVE n(i) AS (
    SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i FROM n);
END"""


@pytest.fixture
def small_cpu_budget(monkeypatch: pytest.MonkeyPatch) -> float:
    seconds = 0.5
    monkeypatch.setattr(index_module, "MAX_INDEX_CPU_SECONDS", seconds)
    return seconds


def test_a_trigger_of_heavy_steps_is_stopped_by_the_cpu_budget(
    tmp_path: Path, small_cpu_budget: float
) -> None:
    index = fake_index(tmp_path, 3, trigger=_HEAVY.format(size=index_module.MAX_INDEX_VALUE))
    before = last_used(index)
    with pytest.raises(LocalStateError) as refused:
        index.delete(_key(1))
    assert f"{small_cpu_budget:g} s of CPU" in refused.value.message
    assert "trigger" in refused.value.hint
    assert last_used(index) == before


def test_a_value_larger_than_the_index_needs_is_refused(tmp_path: Path) -> None:
    """One step may not make a value past :data:`MAX_INDEX_VALUE`: SQLite's own default is a
    billion bytes (a second of work and a gigabyte of memory in one step)."""
    index = fake_index(tmp_path, 3, trigger=_HEAVY.format(size=index_module.MAX_INDEX_VALUE + 1))
    before = last_used(index)
    with pytest.raises(LocalStateError, match="too big"):
        index.delete(_key(1))
    assert last_used(index) == before

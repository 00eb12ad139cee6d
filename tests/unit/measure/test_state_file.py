"""The embedded swtpm's state file: strict parsing, round trip."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustd.privileged.measure._swtpm import SwtpmState, load_state, parse_state
from trustd.shared.codec import DecodeError
from trustd.shared.errors import LocalStateError

GOOD = SwtpmState(pid=4242, swtpm_pid=4243, starts=3, started_at="2025-01-01T00:00:00+00:00")


def doc(**changes: object) -> bytes:
    base = json.loads(GOOD.to_json())
    base.update(changes)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


def test_round_trip() -> None:
    assert parse_state(GOOD.to_json()) == GOOD
    assert json.loads(GOOD.to_json())["version"] == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"version": 1}, "version"),  # an older trustd's TCP swtpm: never reused
        ({"extra": 1}, "extra: unknown field"),
        ({"pid": ...}, "pid: missing required field"),
        ({"pid": "4242"}, "pid: expected an integer, not a string"),
        ({"pid": True}, "pid: expected an integer, not a boolean"),
        ({"pid": 1}, "pid: must be an integer in 2"),
        ({"server_port": 40000}, "server_port: unknown field"),
        ({"swtpm_pid": 0}, "swtpm_pid: must be"),
        ({"starts": 0}, "starts: must be"),
        ({"started_at": ""}, "started_at"),
    ],
)
def test_defects_are_named(changes: dict[str, object], message: str) -> None:
    with pytest.raises(DecodeError, match=message) as info:
        parse_state(doc(**changes))
    assert info.value.source == "swtpm.json"


def test_load_turns_defects_into_local_state_errors(tmp_path: Path) -> None:
    assert load_state(tmp_path) is None
    (tmp_path / "swtpm.json").write_bytes(b"{not json")
    with pytest.raises(LocalStateError, match=r"swtpm\.json") as info:
        load_state(tmp_path)
    assert "remove" in info.value.hint
    (tmp_path / "swtpm.json").write_bytes(b"[]" * 5000)
    with pytest.raises(LocalStateError, match="larger than"):
        load_state(tmp_path)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(DecodeError):  # one domain error, never a ValueError
        parse_state(data)

"""Teardown that fails half-way keeps what the next try needs (ADR 0019, 0026): a DEL that
failed for an ADD that had succeeded keeps the pod's netns and record, because ptp's DEL finds
the addresses it masqueraded on the pod's link; without the netns their rules would leak."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trustd.privileged.net import _netns, pod
from trustd.shared.errors import LocalStateError

UUID = "6a2f8f8e-6c36-4b2e-9d1f-0b8c3f2a9e10"


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setattr(pod, "STATE_DIR", tmp_path)
    calls: dict[str, Any] = {"removed": [], "fail": True, "dels": 0}

    def execute(command: str, *args: object, **kwargs: object) -> bytes:
        assert command == "DEL"
        calls["dels"] += 1
        if calls["fail"]:
            raise LocalStateError("stage1: failed to setup network: network 'default': DEL ptp")
        return b""

    monkeypatch.setattr(pod, "execute", execute)
    monkeypatch.setattr(_netns, "remove", calls["removed"].append)
    calls["dir"] = tmp_path
    return calls


def _record(directory: Path, result: dict[str, object] | None) -> Path:
    step = {"name": "default", "ifname": "eth0", "config": {"type": "ptp"}, "result": result}
    path = directory / f"{UUID}.json"
    path.write_text(json.dumps({"uuid": UUID, "steps": [step]}))
    return path


def test_a_failed_del_after_a_good_add_keeps_the_netns_for_the_next_try(
    state: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    record = _record(state["dir"], {"ips": [{"address": "172.16.28.9/24"}]})
    problems = pod.detach(UUID)
    assert problems and "failed to tear down network" in problems[0]
    assert "warning: stage1: failed to tear down network" in capsys.readouterr().err
    assert state["removed"] == [] and record.exists()  # both kept for gc
    state["fail"] = False
    assert pod.detach(UUID) == []
    assert state["removed"] == [UUID] and not record.exists()


def test_a_failed_del_of_an_add_that_never_answered_still_drops_the_netns(
    state: dict[str, Any],
) -> None:
    record = _record(state["dir"], None)  # ADD started, no result: no rules to find
    assert pod.detach(UUID)
    assert state["removed"] == [UUID] and record.exists()  # the record stays for gc

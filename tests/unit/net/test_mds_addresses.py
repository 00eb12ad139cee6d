"""Where the host metadata daemon sees a pod and where the pod reaches it (ADR 0025): read
from root's network record, for each ``--net`` mode."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from trustd.privileged.executor import _mdsreg
from trustd.privileged.executor.plan import PodPlan
from trustd.privileged.net import addresses, host_address, pod
from trustd.privileged.net.model import PodNetPlan
from trustd.shared.net import NetOptions

UUID = "6a2f8f8e-6c36-4b2e-9d1f-0b8c3f2a9e10"


def _record(directory: Path, *results: dict[str, object] | None) -> None:
    steps = [
        {"name": f"n{i}", "ifname": f"eth{i}", "config": {"type": "ptp"}, "result": r}
        for i, r in enumerate(results)
    ]
    (directory / f"{UUID}.json").write_text(json.dumps({"uuid": UUID, "steps": steps}))


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(pod, "STATE_DIR", tmp_path)
    return tmp_path


def test_the_first_network_with_a_gateway_gives_both_addresses(state: Path) -> None:
    _record(
        state,
        None,  # a step whose ADD had not answered
        {"ips": [{"address": "10.1.0.5/16"}]},  # no gateway: not reachable that way
        {"ips": [{"address": "172.16.28.7/24", "gateway": "172.16.28.1"}]},
    )
    assert addresses(UUID) == ("172.16.28.7", "172.16.28.1")
    assert host_address(UUID) == "172.16.28.1"


def test_no_record_or_no_gateway_is_none(state: Path) -> None:
    assert addresses(UUID) is None and host_address(UUID) is None
    _record(state, {"ips": [{"address": "10.1.0.5/16"}, "garbage"]})
    assert addresses(UUID) is None


def test_pod_address_by_net_mode(state: Path) -> None:
    _record(state, {"ips": [{"address": "172.16.28.7/24", "gateway": "172.16.28.1"}]})
    plan = PodPlan(UUID, "container", "default", "h", (), (), (), True)
    assert _mdsreg.pod_address(plan) is None  # loopback only: no host service reachable
    cni = replace(plan, network=PodNetPlan(options=NetOptions(net="default")))
    assert cni.network.options.mode == "cni"
    assert _mdsreg.pod_address(cni) == ("172.16.28.7", "172.16.28.1")
    host = replace(plan, net="host", network=PodNetPlan(options=NetOptions(net="host")))
    assert _mdsreg.pod_address(host) == ("127.0.0.1", "127.0.0.1")

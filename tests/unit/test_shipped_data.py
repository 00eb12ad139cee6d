"""The shipped data travels inside the package (issue #15): the policy, the seccomp profiles and
the stage1 descriptors are found beside the code, and the measured stage1 digest is the
descriptor's own digest, never a stand-in. (The wheel and ``make install`` copies are compared
with this one in tests/integration/test_install.py.)"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

import trustd
from trustd.privileged.executor import _measure
from trustd.privileged.executor.plan import PodPlan
from trustd.shared import shipped
from trustd.shared.errors import LocalStateError
from trustd.shared.policy import load_policy, shipped_default
from trustd.shared.policy._profiles import profile_paths
from trustd.shared.vocab import FLAVORS

PACKAGE = Path(trustd.__file__).resolve().parent


def _plan(flavor: str) -> PodPlan:
    return cast(PodPlan, SimpleNamespace(uuid="u", flavor=flavor))


def test_the_shipped_data_is_inside_the_package() -> None:
    paths = [shipped_default(), shipped.seccomp_profiles_dir()]
    paths += [shipped.stage1_descriptor(f) for f in FLAVORS]
    for path in paths:
        assert path.exists(), path
        assert path.is_relative_to(PACKAGE), path


def test_the_shipped_seccomp_profiles_are_known_by_name() -> None:
    names = set(profile_paths(load_policy(shipped_default())))
    assert {"moby-default", "containers-default"} <= names


@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_measured_stage1_digest_is_the_descriptors(flavor: str) -> None:
    body = shipped.stage1_descriptor(flavor).read_bytes()
    event = _measure._stage1(_plan(flavor))
    assert event["descriptor_digest"] == "sha256-" + hashlib.sha256(body).hexdigest()
    assert (
        event["descriptor_digest"]
        != "sha256-" + hashlib.sha256(b"builtin:" + flavor.encode()).hexdigest()
    )


def test_a_missing_descriptor_stops_the_measurement() -> None:
    with pytest.raises(LocalStateError, match="stage1 descriptor") as info:
        _measure._stage1(_plan("no-such-flavor"))
    assert "reinstall" in (info.value.hint or "")

"""One vocabulary: the policy file, its schema, the CLI and the plan spell flavors, modes and
opt-outs from the same definitions (issue #10)."""

from __future__ import annotations

from typing import Any

import pytest

from trustd.shared.insecure import INSECURE_NAMES, Insecure, insecure_names, parse_insecure_options
from trustd.shared.policy import PolicyFileError, loads_policy
from trustd.shared.policy.schema import policy_schema
from trustd.shared.vocab import FLAVORS, MEASURE_MODES, SELINUX_MODES, STAGE1_NAMES


def _enum(schema: dict[str, Any], table: str, key: str) -> list[str]:
    prop = schema["$defs"][table]["properties"][key]
    return list(prop["items"]["enum"] if "items" in prop else prop["enum"])


def test_the_policy_schema_uses_the_shared_definitions() -> None:
    schema = policy_schema()
    assert _enum(schema, "RunRules", "flavors") == list(FLAVORS)
    assert _enum(schema, "RunRules", "selinux") == list(SELINUX_MODES)
    assert _enum(schema, "RunRules", "insecure_options") == list(INSECURE_NAMES)
    assert _enum(schema, "Scope", "measure") == list(MEASURE_MODES)


def test_every_stage1_name_runs_a_known_flavor() -> None:
    assert set(STAGE1_NAMES.values()) == set(FLAVORS)


def test_insecure_names_are_the_single_bits_of_the_flag() -> None:
    everything = parse_insecure_options("all,ondisk")
    assert insecure_names(everything) == list(INSECURE_NAMES)
    assert all(parse_insecure_options(n) in everything for n in INSECURE_NAMES)
    assert insecure_names(Insecure.NONE) == []


@pytest.mark.parametrize("flavor", ["kvm", "Container"])
def test_a_policy_naming_an_unknown_flavor_is_refused(flavor: str) -> None:
    text = f'version = 1\n[default]\n[default.run]\nflavors = ["{flavor}"]\n'
    with pytest.raises(PolicyFileError, match=r"default\.run\.flavors\.0: .* is not one of"):
        loads_policy(text.encode(), "p.toml")

"""The run vocabulary, defined once: stage1 flavors, measurement and SELinux modes.

Policy, plan, request, gate, measurement config and CLI all import these; nothing else spells
them out. Capability names are :data:`trustd.shared.isolation.caps.CAP_NAMES`; the
``--insecure-options`` names are :data:`trustd.shared.insecure.InsecureName`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

Flavor = Literal["container", "fly"]
FLAVORS: tuple[Flavor, ...] = get_args(Flavor)

# rkt's --stage1-name spellings (and trustd's own) -> the flavor they run.
STAGE1_NAMES: Mapping[str, Flavor] = {
    "container": "container",
    "fly": "fly",
    "coreos.com/rkt/stage1-coreos": "container",
    "coreos.com/rkt/stage1-fly": "fly",
    "trustd.io/stage1/container": "container",
    "trustd.io/stage1/fly": "fly",
}

MeasureMode = Literal["required", "best-effort", "off"]
MEASURE_MODES: tuple[MeasureMode, ...] = get_args(MeasureMode)
# A mode is at least as strong as another when its rank is not lower.
MEASURE_RANK: Mapping[MeasureMode, int] = {"off": 0, "best-effort": 1, "required": 2}

SelinuxMode = Literal["enforce", "permissive", "off"]
SELINUX_MODES: tuple[SelinuxMode, ...] = get_args(SelinuxMode)  # strictest first
SELINUX_RANK: Mapping[SelinuxMode, int] = {"off": 0, "permissive": 1, "enforce": 2}

Net = Literal["default", "none", "host"]
PrivateUsersRule = Literal["required", "optional"]  # run.private_users per scope
NETS: tuple[Net, ...] = get_args(Net)

"""The run gate is the one way to a runnable pod: only it builds a GatedPod, from the
re-verified manifest's name and version, with the seccomp digest it decided on."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tests._aci import manifest
from tests.conftest import ConfigDirs
from trustd.privileged.executor._gate import GatedPod, gate_run
from trustd.privileged.executor._measure import MeasureConfig, measure_pod_start
from trustd.privileged.executor.plan import AppPlan, PodPlan, SeccompPlan
from trustd.privileged.executor.prepare import Prepared
from trustd.privileged.executor.stage1 import run_pod
from trustd.privileged.treestore.datadir import open_data_dir
from trustd.privileged.treestore.render import RenderedTree
from trustd.shared.appc.manifest import parse_image_manifest
from trustd.shared.errors import LocalStateError, PolicyViolationError
from trustd.shared.isolation import default_spec, spec_digest
from trustd.shared.keystore import Keystore
from trustd.shared.policy import loads_policy
from trustd.shared.policy.log import root_log_path

NAME = "example.com/app"
POLICY = f"""
version = 1
[default]
measure = "off"
[default.require]
type = "accept-anything"
[default.run]
selinux = "off"
insecure_options = ["image"]
[scopes."{NAME}:2.0.0".require]
type = "reject"
"""


def _tree(version: str) -> RenderedTree:
    doc = json.dumps(manifest(NAME, version)).encode()
    return RenderedTree(
        Path(f"/trees/{version}"), parse_image_manifest(doc, source="t"), (), insecure=True
    )


def _plan(tree: RenderedTree) -> PodPlan:
    spec = default_spec()
    app = AppPlan(
        name="app", image_key="sha512-" + "0" * 64, image_name=NAME, tree=str(tree.path),
        signers=(), insecure_image=True, exec=("/bin/hello",), env=(), uid=0, gid=0, user="0",
        group="0", working_dir="/", readonly_rootfs=False,
        capabilities=("CAP_CHOWN",),
        seccomp=SeccompPlan("retain", tuple(sorted(spec.syscalls)), spec.errno, "rkt-default"),
        memory=None, cpu_millis=None,
    )  # fmt: skip
    return PodPlan("u", "container", "default", "h", (app,), (), ("image",), True)


def _gate(dirs: ConfigDirs, tree: RenderedTree, plan: PodPlan | None = None) -> GatedPod:
    return gate_run(
        plan or _plan(tree),
        [tree],
        loads_policy(POLICY.encode(), "policy.toml"),
        Keystore(dirs.system, dirs.local),
        data=open_data_dir(dirs.data),
        measurement="off",
    )


def test_an_exact_name_version_scope_decides_that_version(config_dirs: ConfigDirs) -> None:
    with pytest.raises(PolicyViolationError, match=f'"{NAME}:2.0.0" refused by policy'):
        _gate(config_dirs, _tree("2.0.0"))
    gated = _gate(config_dirs, _tree("1.0.0"))
    assert (str(gated.apps[0].image), gated.apps[0].decision.scope) == (f"{NAME}:1.0.0", "default")
    logged = [
        json.loads(x)["decision"] for x in root_log_path(config_dirs.data).read_text().splitlines()
    ]
    assert [(d["image"], d["verdict"]) for d in logged] == [
        (f"{NAME}:2.0.0", "deny"),
        (f"{NAME}:1.0.0", "allow"),
    ]


def test_the_gate_carries_the_digest_it_decided_on(config_dirs: ConfigDirs) -> None:
    gated = _gate(config_dirs, _tree("1.0.0"))
    assert gated.apps[0].seccomp_digest == spec_digest(default_spec())


def test_the_plan_must_name_the_tree_that_was_re_verified(config_dirs: ConfigDirs) -> None:
    tree = _tree("1.0.0")
    other = replace(_plan(tree), apps=(replace(_plan(tree).apps[0], tree="/elsewhere"),))
    with pytest.raises(LocalStateError, match="was not re-verified"):
        _gate(config_dirs, tree, other)
    renamed = replace(_plan(tree), apps=(replace(_plan(tree).apps[0], image_name="x.com/y"),))
    with pytest.raises(LocalStateError, match=r"names image 'x\.com/y'"):
        _gate(config_dirs, tree, renamed)


def test_nothing_else_builds_or_stands_in_for_a_gated_pod(
    config_dirs: ConfigDirs, tmp_path: Path
) -> None:
    plan = _plan(_tree("1.0.0"))
    with pytest.raises(TypeError, match="only by the run gate"):
        GatedPod(plan, (), "off")
    with pytest.raises(TypeError, match="GatedPod"):
        Prepared(None, plan, -1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="GatedPod"):
        measure_pod_start(plan, tmp_path, tmp_path, MeasureConfig("off"), None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="GatedPod"):
        run_pod(tmp_path, plan)  # type: ignore[arg-type]

"""The run gate: the policy in force decides every app of a pod, at prepare and again at run.

Each decision (allow, warn, deny) is appended to root's hash-chained decision log,
``<dir>/private/decisions.jsonl``, before it is enforced, so refusals are on record too. Root
opens it by fd beneath its checked ``private/`` directory, following no symlink; it never
writes the group's ``<dir>/policy/decisions.jsonl``.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Literal

from trustd.privileged.executor._seccomp import check_profile, spec_from_plan
from trustd.privileged.executor.plan import AppPlan, PodPlan
from trustd.privileged.treestore.datadir import DataDir, open_root_log
from trustd.shared.isolation import spec_digest
from trustd.shared.keystore import Keystore
from trustd.shared.policy import Policy, RunInput, decide_run
from trustd.shared.policy.log import append_decision_fd

MeasureMode = Literal["required", "best-effort", "off"]


def _seccomp_digest(app: AppPlan) -> str | None:
    if app.seccomp is None:
        return None
    check_profile(app.seccomp, app.capabilities)
    return spec_digest(spec_from_plan(app.seccomp))


def run_input(plan: PodPlan, app: AppPlan, measurement: MeasureMode) -> RunInput:
    selinux: Literal["enforce", "permissive", "off"] = (
        "off" if plan.selinux_mode == "off" else "enforce" if plan.selinux_process else "permissive"
    )
    return RunInput(
        image_name=app.image_name,
        image_id=app.image_key,
        signers=app.signers,
        insecure_image=app.insecure_image,
        flavor=plan.flavor,
        seccomp_digest=_seccomp_digest(app),
        seccomp_source=app.seccomp.source if app.seccomp else "--insecure-options=seccomp",
        capabilities=app.capabilities,
        insecure_options=plan.insecure,
        measurement=measurement,
        selinux=selinux,
    )


def gate_run(
    plan: PodPlan, policy: Policy, keystore: Keystore, data: DataDir, measurement: MeasureMode
) -> None:
    """Decide, record, then enforce each app; the first denial stops the pod."""
    now = datetime.now(UTC)
    decisions = [
        decide_run(policy, run_input(plan, app, measurement), keystore, now) for app in plan.apps
    ]
    fd = open_root_log(data, create=True)
    assert fd is not None  # noqa: S101 - create=True
    try:
        for decision in decisions:
            append_decision_fd(fd, str(data.private / "decisions.jsonl"), decision)
    finally:
        os.close(fd)
    for decision in decisions:
        decision.enforce()

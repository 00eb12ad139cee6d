"""Measure a pod start into the TPM before any app code runs (issue #5, ADR 0007).

One CEL event per component: the stage1 descriptor, each app's image and the signers that
verified it (or that it was imported insecurely), the pod manifest, the isolation each app
gets, and the policy in force. Never a secret (the metadata token is not in the plan), never
an empty field. The outcome is written to ``measurement.json`` in the pod directory.
Configuration: ``measure.json`` (``{"mode": "required|best-effort|off", "pcr": 23,
"tcti": "..."}``) in the local config dir, else the system one; default: required.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import trustd
from trustd.privileged.executor.plan import AppPlan, PodPlan
from trustd.privileged.measure import DEFAULT_PCR, Measurer
from trustd.shared._fsutil import atomic_write
from trustd.shared.errors import UserError
from trustd.shared.policy import Policy

MODES = ("required", "best-effort", "off")


@dataclass(frozen=True, slots=True)
class MeasureConfig:
    mode: Literal["required", "best-effort", "off"] = "required"
    pcr: int = DEFAULT_PCR
    tcti: str | None = None


def load_config(system_config: Path, local_config: Path) -> MeasureConfig:
    for base in (local_config, system_config):
        path = base / "measure.json"
        if path.is_file():
            try:
                raw = json.loads(path.read_text())
                config = MeasureConfig(**raw)
            except (ValueError, TypeError) as exc:
                raise UserError(
                    f"bad measurement config {path}: {exc}",
                    hint='e.g. {"mode": "required", "pcr": 23}',
                ) from exc
            if config.mode not in MODES:
                raise UserError(
                    f"bad measurement mode {config.mode!r} in {path}",
                    hint=f"use one of: {', '.join(MODES)}",
                )
            return config
    return MeasureConfig()


def _sha256(data: bytes) -> str:
    return "sha256-" + hashlib.sha256(data).hexdigest()


def _stage1(plan: PodPlan) -> dict[str, Any]:
    descriptor = Path(trustd.__file__).parents[1] / "stage1" / f"{plan.flavor}.json"
    body = descriptor.read_bytes() if descriptor.is_file() else f"builtin:{plan.flavor}".encode()
    return {"pod": plan.uuid, "flavor": plan.flavor, "descriptor_digest": _sha256(body)}


def _image(plan: PodPlan, app: AppPlan) -> dict[str, Any]:
    data: dict[str, Any] = {
        "pod": plan.uuid,
        "app": app.name,
        "image_id": app.image_key,
        "name": app.image_name,
    }
    if app.signers:
        data["signers"] = list(app.signers)
    else:
        data["insecure"] = True
    return data


def _selinux(plan: PodPlan) -> str:
    if plan.selinux_process:
        return plan.selinux_process
    if plan.selinux_mode == "off":
        return "off"
    return f"not applied ({plan.selinux_mode}): this kernel has no SELinux"


def _isolation(plan: PodPlan, app: AppPlan) -> dict[str, Any]:
    data: dict[str, Any] = {
        "pod": plan.uuid,
        "app": app.name,
        "flavor": plan.flavor,
        "no_new_privs": plan.flavor == "container",
        "masked_paths": plan.masked_paths,
        "selinux": _selinux(plan),
        "user": f"{app.uid}:{app.gid}",
    }
    if app.seccomp is not None:
        spec: dict[str, Any] = {
            "mode": app.seccomp.mode,
            "syscalls": list(app.seccomp.syscalls),
            "errno": app.seccomp.errno,
        }
        if app.seccomp.profile_digest:  # a Docker-format profile: its file and resolved rules
            spec["profile"] = app.seccomp.profile_digest
            spec["rules"] = [asdict(r) for r in app.seccomp.rules]
        data["seccomp"] = app.seccomp.source or app.seccomp.mode
        data["seccomp_digest"] = _sha256(json.dumps(spec, sort_keys=True).encode())
    else:
        data["seccomp"] = "disabled"
    data["capabilities"] = list(app.capabilities) if app.capabilities else "unrestricted"
    if plan.insecure:
        data["insecure_options"] = list(plan.insecure)
    for key, value in (("memory", app.memory), ("cpu_millis", app.cpu_millis)):
        if value is not None:
            data[key] = value
    return data


def _root_log_head(data_dir: Path) -> str:
    """The head of root's decision log (``private/decisions.jsonl``), read by fd."""
    import os  # noqa: PLC0415

    from trustd.privileged.treestore.datadir import open_data_dir, open_root_log  # noqa: PLC0415
    from trustd.shared.policy.log import GENESIS, chain_head_fd, root_log_path  # noqa: PLC0415

    with open_data_dir(data_dir) as data:
        fd = open_root_log(data, create=False)
    if fd is None:
        return GENESIS
    try:
        return chain_head_fd(fd, str(root_log_path(data_dir)))
    finally:
        os.close(fd)


def _policy(plan: PodPlan, policy: Policy, data_dir: Path) -> dict[str, Any]:
    """The policy in force and the head of root's decision log (so a rewrite is
    detectable)."""
    return {
        "pod": plan.uuid,
        "source": policy.source,
        "digest": policy.digest,
        "decision_log_head": _root_log_head(data_dir),
    }


def events(plan: PodPlan, pod_dir: Path, policy: Policy, data_dir: Path) -> list[dict[str, Any]]:
    out = [{"kind": "stage1", "data": _stage1(plan)}]
    out += [{"kind": "image", "data": _image(plan, app)} for app in plan.apps]
    out.append(
        {
            "kind": "pod-manifest",
            "data": {"pod": plan.uuid, "digest": _sha256((pod_dir / "pod").read_bytes())},
        }
    )
    out += [{"kind": "isolation", "data": _isolation(plan, app)} for app in plan.apps]
    out.append({"kind": "policy", "data": _policy(plan, policy, data_dir)})
    return out


def measure_pod_start(
    plan: PodPlan,
    pod_dir: Path,
    data_dir: Path,
    config: MeasureConfig,
    policy: Policy,
) -> dict[str, Any]:
    """Extend every event or raise MeasurementError (fail closed) unless best-effort/off."""
    if config.mode == "off":
        result: dict[str, Any] = {
            "measured": False,
            "mode": "off",
            "reason": "measurement is off in measure.json",
        }
    else:
        measurer = Measurer(
            data_dir,
            pcr=config.pcr,
            tcti=config.tcti,
            mode="strict" if config.mode == "required" else "best-effort",
        )
        records = measurer.extend_all(config.pcr, events(plan, pod_dir, policy, data_dir))
        missing = [r.reason for r in records if not r.measured]
        result = {
            "mode": config.mode,
            "pcr": config.pcr,
            "backend": measurer.backend,
            "measured": not missing,
            "records": [r.recnum for r in records],
        }
        if missing:
            result["reason"] = missing[0]
    atomic_write(pod_dir / "measurement.json", json.dumps(result, indent=2).encode(), mode=0o640)
    return result

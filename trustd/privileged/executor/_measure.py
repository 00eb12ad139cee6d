"""Measure a pod start into the TPM before any app code runs (issue #5, ADR 0007).

One CEL event per component: the stage1 descriptor, each app's image and the signers that
verified it (or that it was imported insecurely), the pod manifest, the isolation each app
gets, and the policy in force. Never a secret (the metadata token is not in the plan), never
an empty field. The outcome is written to ``measurement.json`` in the pod directory.
Configuration: ``measure.json`` (``{"mode": "required|best-effort|off", "pcr": 23,
"tcti": "..."}``) in the local config dir, else the system one; default: required, and the
PCR of ``default_pcr`` (14 on the embedded swtpm, 23 otherwise; ADR 0007).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustd.privileged.measure import Measurer
from trustd.privileged.pod.lifecycle import MANIFEST, PRIVATE
from trustd.shared._dataclass import frozen
from trustd.shared._fsutil import atomic_write
from trustd.shared.codec import read_json
from trustd.shared.errors import UserError
from trustd.shared.vocab import MEASURE_MODES, MEASURE_RANK, MeasureMode

if TYPE_CHECKING:  # the attest verbs load the config only: no run gate, plan or policy code
    from trustd.privileged.executor._gate import GatedApp, GatedPod
    from trustd.privileged.executor.plan import PodPlan
    from trustd.shared.policy import Policy

MODES = MEASURE_MODES
MAX_PCR = 23
_HINT = f'e.g. {{"mode": "required", "pcr": 23}}; mode is one of: {", ".join(MODES)}'


def _pcr(value: int | None) -> str | None:
    if value is None or 0 <= value <= MAX_PCR:
        return None
    return f"must be a PCR number, 0 to {MAX_PCR}"


@frozen
class MeasureConfig:
    mode: MeasureMode = "required"
    pcr: int | None = field(default=None, metadata={"check": _pcr})  # None: the backend's default
    tcti: str | None = None


def load_config(system_config: Path, local_config: Path) -> MeasureConfig:
    """``measure.json`` of the local config dir, else the system one, else the default;
    strict: an unknown key, a wrong type or an unknown mode is an error naming it."""
    for base in (local_config, system_config):
        path = base / "measure.json"
        if path.is_file():
            return read_json(path, MeasureConfig, hint=_HINT)
    return MeasureConfig()


def _sha256(data: bytes) -> str:
    return "sha256-" + hashlib.sha256(data).hexdigest()


def _stage1(plan: PodPlan) -> dict[str, Any]:
    """The shipped descriptor's digest and the image ID of the stage1 ACI made from it
    (docs/adr/0018): the same bytes in every install, derived from the package data here,
    never read from the store's group-writable copy."""
    from trustd.shared.stage1image import stage1_image  # noqa: PLC0415

    image = stage1_image(plan.flavor)
    return {
        "pod": plan.uuid,
        "flavor": plan.flavor,
        "descriptor_digest": image.descriptor_digest,
        "image": image.name,
        "image_id": image.image_id,
    }


def _image(plan: PodPlan, gated: GatedApp) -> dict[str, Any]:
    data: dict[str, Any] = {
        "pod": plan.uuid,
        "app": gated.name,
        "image_id": gated.plan.image_key,
        "name": str(gated.image.name),
    }
    if gated.image.version:
        data["version"] = gated.image.version
    if gated.signers:
        data["signers"] = list(gated.signers)
    else:
        data["insecure"] = True
    if gated.docker_name and gated.signers:  # which signature format vouched, for what
        kinds = {"sigstore" if len(s) == 64 else "simple-signing" for s in gated.signers}
        data["signature"] = {
            "format": "+".join(sorted(kinds)),
            "docker_name": gated.docker_name,
            "manifest_digest": gated.manifest_digest,
        }
    return data


def _selinux(plan: PodPlan) -> str:
    if plan.selinux_process:
        return plan.selinux_process
    if plan.selinux_mode == "off":
        return "off"
    return f"not applied ({plan.selinux_mode}): this kernel has no SELinux"


def _isolation(plan: PodPlan, gated: GatedApp) -> dict[str, Any]:
    app = gated.plan
    data: dict[str, Any] = {
        "pod": plan.uuid,
        "app": app.name,
        "flavor": plan.flavor,
        "no_new_privs": plan.flavor == "container",
        "masked_paths": plan.masked_paths,
        "selinux": _selinux(plan),
        "user": f"{app.uid}:{app.gid}",
    }
    if plan.private_users is not None:  # host uid:gid range of the pod (user namespace)
        data["private_users"] = f"{plan.private_users}:65536"
    if app.seccomp is not None and gated.seccomp_digest is not None:
        data["seccomp"] = app.seccomp.source or app.seccomp.mode
        if app.seccomp.profile_digest:  # a Docker-format profile: the rules resolved from it
            rules = [dataclasses.asdict(r) for r in app.seccomp.rules]  # for these caps, arch
            data["seccomp_rules_digest"] = _sha256(json.dumps(rules, sort_keys=True).encode())
        data["seccomp_digest"] = gated.seccomp_digest  # the digest the gate decided on
    else:
        data["seccomp"] = "disabled"
    data["capabilities"] = list(app.capabilities) if app.capabilities else "unrestricted"
    if plan.insecure:
        data["insecure_options"] = list(plan.insecure)
    for key, value in (("memory", app.memory), ("cpu_millis", app.cpu_millis)):
        if value is not None:
            data[key] = value
    return data


def _network(plan: PodPlan) -> dict[str, Any]:
    """The networks the pod joins and one digest over their exact plugin configurations,
    port forwards, DNS and hosts options (trustd.privileged.net.model.PodNetPlan.digest)."""
    return {
        "pod": plan.uuid,
        "networks": list(plan.network.names()),
        "digest": plan.network.digest(),
    }


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


def events(gated: GatedPod, pod_dir: Path, policy: Policy, data_dir: Path) -> list[dict[str, Any]]:
    plan = gated.plan
    out = [{"kind": "stage1", "data": _stage1(plan)}]
    out += [{"kind": "image", "data": _image(plan, app)} for app in gated.apps]
    out.append(
        {
            "kind": "pod-manifest",
            "data": {
                "pod": plan.uuid,
                "digest": _sha256((pod_dir / PRIVATE / MANIFEST).read_bytes()),
            },
        }
    )
    out += [{"kind": "isolation", "data": _isolation(plan, app)} for app in gated.apps]
    out.append({"kind": "network", "data": _network(plan)})
    out.append({"kind": "policy", "data": _policy(plan, policy, data_dir)})
    return out


def measure_pod_start(
    gated: GatedPod,
    pod_dir: Path,
    data_dir: Path,
    config: MeasureConfig,
    policy: Policy,
) -> dict[str, Any]:
    """Extend every event or raise MeasurementError (fail closed) unless best-effort/off.

    Only a pod the run gate admitted can be measured; the mode it was admitted under must
    be the one in force (the gate checked that against the scope's ``measure``)."""
    from trustd.privileged.executor._gate import GatedPod  # noqa: PLC0415

    if not isinstance(gated, GatedPod):
        raise TypeError("measure_pod_start takes the run gate's GatedPod")
    if MEASURE_RANK[config.mode] < MEASURE_RANK[gated.measurement]:
        raise UserError(
            f"measurement is {config.mode} but the pod was admitted for {gated.measurement}",
            hint="run the pod again with the measurement configuration it was prepared with",
        )
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
        records = measurer.extend_all(measurer.pcr, events(gated, pod_dir, policy, data_dir))
        missing = [r.reason for r in records if not r.measured]
        result = {
            "mode": config.mode,
            "pcr": measurer.pcr,
            "backend": measurer.backend,
            "measured": not missing,
            "records": [r.recnum for r in records],
        }
        if missing:
            result["reason"] = missing[0]
    atomic_write(pod_dir / "measurement.json", json.dumps(result, indent=2).encode(), mode=0o640)
    return result

"""From appc isolators, rkt's flags and the opt-outs to an app's isolation plan, and applying
that plan in the app's process right before exec (user, capabilities, no_new_privs, seccomp).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trustd.privileged.executor._linux import cloexec_above_stdio
from trustd.privileged.executor._seccomp import is_profile, plan_profile, spec_from_plan
from trustd.privileged.executor.plan import AppPlan, PodPlan, SeccompPlan
from trustd.privileged.isolation.cgroups import Limits, PodCgroup, parse_cpu, parse_memory
from trustd.privileged.isolation.selinux import set_exec_label
from trustd.shared.appc.manifest import ImageManifest
from trustd.shared.errors import PolicyViolationError, UserError
from trustd.shared.insecure import Insecure
from trustd.shared.isolation import (
    CapSet,
    SeccompSpec,
    apply_caps,
    apply_seccomp,
    caps_from_cli,
    caps_from_isolator,
    default_caps,
    default_spec,
    seccomp_from_cli,
    seccomp_from_isolator,
    set_no_new_privs,
)
from trustd.shared.policy import Policy
from trustd.shared.request import AppRequest, RunRequest

CAPS_ISOLATORS = ("os/linux/capabilities-retain-set", "os/linux/capabilities-remove-set")
SECCOMP_ISOLATORS = ("os/linux/seccomp-retain-set", "os/linux/seccomp-remove-set")
NNP_ISOLATOR = "os/linux/no-new-privileges"


def _no_new_privileges(manifest: ImageManifest) -> bool:
    """appc's ``os/linux/no-new-privileges`` isolator (a bare boolean); on unless it says
    false. A value that is not a boolean is refused, never read as on or off."""
    app = manifest.app
    for iso in (app.isolators or ()) if app else ():
        if str(iso.name) == NNP_ISOLATOR:
            if not isinstance(iso.value, bool):
                raise UserError(
                    f"image {manifest.name}: isolator {NNP_ISOLATOR} has value {iso.value_json}, "
                    "not true or false",
                    hint="fix the image manifest: the value is a JSON boolean",
                )
            return iso.value
    return True


def _isolators(manifest: ImageManifest) -> dict[str, Mapping[str, Any]]:
    app = manifest.app
    found: dict[str, Mapping[str, Any]] = {}
    for iso in (app.isolators or ()) if app else ():
        value = iso.value
        if isinstance(value, dict):
            found[str(iso.name)] = value
    return found


def _caps(req: AppRequest, isolators: Mapping[str, Mapping[str, Any]]) -> CapSet:
    if req.caps_retain or req.caps_remove:
        return caps_from_cli(
            retain=",".join(req.caps_retain) or None, remove=",".join(req.caps_remove) or None
        )
    for name in CAPS_ISOLATORS:
        if name in isolators:
            return caps_from_isolator(name, isolators[name])
    return default_caps()


def _seccomp(req: AppRequest, isolators: Mapping[str, Mapping[str, Any]]) -> SeccompSpec:
    if req.seccomp:
        return seccomp_from_cli(req.seccomp)
    for name in SECCOMP_ISOLATORS:
        if name in isolators:
            return seccomp_from_isolator(name, isolators[name])
    return default_spec()


def _limit(req_value: str | None, iso: Mapping[str, Any] | None) -> str | None:
    if req_value:
        return req_value
    limit = (iso or {}).get("limit")
    return str(limit) if limit is not None else None


def _seccomp_plan(
    req: AppRequest,
    isolators: Mapping[str, Mapping[str, Any]],
    policy: Policy,
    caps: tuple[str, ...] | None,
) -> SeccompPlan:
    if req.seccomp and is_profile(req.seccomp):
        return plan_profile(req.seccomp, policy, caps)
    spec = _seccomp(req, isolators)
    return SeccompPlan(spec.mode, tuple(sorted(spec.syscalls)), spec.errno, spec.source)


def plan_isolation(
    req: AppRequest, manifest: ImageManifest, request: RunRequest, policy: Policy
) -> dict[str, Any]:
    """capabilities, seccomp, memory and cpu for one app; None where isolation is off.

    ``policy`` names the Docker-format seccomp profiles ``--seccomp=profile=NAME`` can use."""
    isolators = _isolators(manifest)
    memory = _limit(req.memory, isolators.get("resource/memory"))
    cpu = _limit(req.cpu, isolators.get("resource/cpu"))
    if request.flavor == "fly":
        return {"capabilities": None, "seccomp": None, "memory": None, "cpu_millis": None}
    scalars = _scalar_isolators(manifest)
    oom = req.oom_score_adj if req.oom_score_adj is not None else scalars.get("oom-score-adj")
    shares = req.cpu_shares if req.cpu_shares is not None else scalars.get("cpu-shares")
    capset = None if Insecure.CAPABILITIES in request.insecure else _caps(req, isolators)
    caps = None if capset is None else tuple(capset.sorted_names())
    seccomp_off = Insecure.SECCOMP in request.insecure
    return {
        "capabilities": caps,
        "seccomp": None if seccomp_off else _seccomp_plan(req, isolators, policy, caps),
        "memory": None if memory is None else parse_memory(memory),
        "cpu_millis": None if cpu is None else parse_cpu(cpu),
        "no_new_privileges": _no_new_privileges(manifest),
        "oom_score_adj": oom,
        "cpu_shares": shares,
    }


def _scalar_isolators(manifest: ImageManifest) -> dict[str, int]:
    """The image's ``os/linux/oom-score-adj`` and ``os/linux/cpu-shares`` (integers, checked
    as the request's are: a value out of range stops the run)."""
    from trustd.shared.request import CPU_SHARES, OOM_SCORE_ADJ  # noqa: PLC0415

    found: dict[str, int] = {}
    bounds = {"oom-score-adj": OOM_SCORE_ADJ, "cpu-shares": CPU_SHARES}
    for iso in (manifest.app.isolators or ()) if manifest.app else ():
        key = str(iso.name).removeprefix("os/linux/")
        if key in bounds:
            value = iso.value
            low, high = bounds[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise PolicyViolationError(
                    f"isolator {iso.name} {value!r} is not an integer in {low}..{high}",
                    hint=f"override it: --{key}=N after the image",
                )
            found[key] = value
    return found


def _set_user(app: AppPlan, caps: tuple[str, ...] | None) -> None:
    os.setgroups([app.gid, *app.supplementary_gids])
    os.setgid(app.gid)
    if app.uid == 0:
        if caps is not None:
            apply_caps(CapSet(frozenset(caps), "plan"))
        return
    if caps is not None:  # while still root; setuid() then clears what a non-root app held
        apply_caps(CapSet(frozenset(caps) | {"CAP_SETUID"}, "plan"))
    os.setuid(app.uid)


def apply_app_isolation(plan: PodPlan, app: AppPlan) -> None:
    """In the app's process, right before exec. Failure raises: the app does not start.

    First every fd above 2 becomes close-on-exec (an fd rkt inherited, ``9</etc``, never
    reaches the app, nor one of ours); this runs before the seccomp filter, which may refuse
    close_range, getdents64 or fcntl. Every fd Python opens after it is O_CLOEXEC (PEP 446),
    so none can reach the exec either.
    """
    cloexec_above_stdio()
    if app.oom_score_adj is not None:  # while root (lowering it needs CAP_SYS_RESOURCE)
        with open("/proc/self/oom_score_adj", "w") as f:  # noqa: PTH123 - the pod's /proc
            f.write(str(app.oom_score_adj))
    if plan.flavor == "fly":
        os.setgroups([app.gid, *app.supplementary_gids])
        os.setgid(app.gid)
        os.setuid(app.uid)
        return
    if plan.selinux_process:
        set_exec_label(plan.selinux_process)  # applies at the execve below
    if not app.no_new_privileges:
        _without_no_new_privs(app)
        return
    _switch_user(app)
    if app.seccomp is None:
        set_no_new_privs()
        return
    apply_seccomp(spec_from_plan(app.seccomp))


def _switch_user(app: AppPlan) -> None:
    try:
        _set_user(app, app.capabilities)
    except OSError as exc:
        raise PolicyViolationError(
            f"cannot switch app {app.name!r} to uid {app.uid} gid {app.gid}: {exc.strerror}"
        ) from exc


def _without_no_new_privs(app: AppPlan) -> None:
    """The image's ``os/linux/no-new-privileges`` is false (the run gate allowed it). The
    kernel loads a seccomp filter without no_new_privs only from a process holding
    CAP_SYS_ADMIN, so the filter goes in first, while this process is still root, and the
    switch to the app's user and capabilities then runs under it."""
    if app.seccomp is not None:
        apply_seccomp(spec_from_plan(app.seccomp), no_new_privs=False)
    _switch_user(app)


def preload() -> None:
    """An app's process leaves the host filesystem (pivot_root, or setns for enter) before it
    applies its isolation: load every module and shared library that needs, now."""
    for module in ("encodings.ascii", "encodings.latin_1", "encodings.utf_8", "pyseccomp"):
        importlib.import_module(module)


def _cgroup_id(plan: PodPlan, app: AppPlan) -> str:
    return f"{plan.uuid}.{app.name}"


class PodGroups:
    """One cgroup per app (limits are per app in appc), created by the pod's init."""

    def __init__(self, plan: PodPlan) -> None:
        self.plan = plan
        self.groups: dict[str, PodCgroup] = {}

    def add(self, app: AppPlan, pid: int) -> None:
        if self.plan.flavor == "fly":
            return
        group = self.groups.get(app.name)
        if group is None:
            limits = Limits(memory=app.memory, cpu=app.cpu_millis, cpu_shares=app.cpu_shares)
            group = PodCgroup.create(_cgroup_id(self.plan, app), limits)
            self.groups[app.name] = group
        group.add(pid)

    def destroy(self) -> None:
        for group in self.groups.values():
            group.destroy()

    def record_oom(self, pod_dir: Path) -> None:
        for name, group in self.groups.items():
            if group.oom_killed():
                (pod_dir / "apps" / name / "oom-killed").write_text("true")


def pod_cgroups(plan: PodPlan) -> PodGroups:
    return PodGroups(plan)


def join_app_cgroups(plan: PodPlan, app: AppPlan, pid: int) -> None:
    if plan.flavor != "fly":
        PodCgroup.open(_cgroup_id(plan, app), missing_ok=True).add(pid)


def destroy_pod_cgroups(plan: PodPlan) -> None:
    for app in plan.apps:
        PodCgroup.open(_cgroup_id(plan, app), missing_ok=True).destroy()

"""The run plan: everything the stage1 needs, computed by root at prepare time and kept in the
pod's root-only ``private/plan.json``, so ``run-prepared`` and ``enter`` apply the same."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trustd.shared.request import Flavor, Mount, Net, Volume

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True, slots=True)
class SeccompRulePlan:
    """One rule of a Docker-format profile, resolved: names sharing action, errno and args."""

    names: tuple[str, ...]
    action: str  # SCMP_ACT_*
    errno: int | None
    args: tuple[tuple[int, str, int, int], ...] = ()  # (index, SCMP_CMP_*, value, valueTwo)


@dataclass(frozen=True, slots=True)
class SeccompPlan:
    mode: str  # "retain" | "remove" | "profile"
    syscalls: tuple[str, ...]
    errno: int | None  # None: a refused syscall kills the app (SIGSYS), as in rkt
    source: str
    # mode "profile" (--seccomp=profile=NAME|PATH): the profile, its file and digest, and the
    # filter resolved for the app's capabilities and this arch; errno is the default errno.
    profile: str | None = None
    profile_path: str | None = None
    profile_digest: str | None = None
    default_action: str | None = None
    rules: tuple[SeccompRulePlan, ...] = ()

    @classmethod
    def from_dict(cls, sec: dict[str, Any]) -> SeccompPlan:
        rules = tuple(
            SeccompRulePlan(
                tuple(r["names"]),
                r["action"],
                r["errno"],
                tuple((int(a[0]), str(a[1]), int(a[2]), int(a[3])) for a in r["args"]),
            )
            for r in sec.get("rules", ())
        )
        return cls(
            **{**sec, "syscalls": tuple(sec["syscalls"]), "rules": rules},
        )


@dataclass(frozen=True, slots=True)
class AppPlan:
    name: str
    image_key: str
    image_name: str
    tree: str  # the rendered tree (contains rootfs/)
    signers: tuple[str, ...]
    insecure_image: bool
    exec: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    uid: int
    gid: int
    user: str
    group: str
    working_dir: str
    readonly_rootfs: bool
    capabilities: tuple[str, ...] | None  # None: restriction disabled (recorded)
    seccomp: SeccompPlan | None  # None: disabled (recorded)
    memory: int | None
    cpu_millis: int | None
    mounts: tuple[Mount, ...] = ()
    pre_start: tuple[tuple[str, ...], ...] = ()  # appc event handlers, run in the app's root
    post_stop: tuple[tuple[str, ...], ...] = ()

    @property
    def rootfs(self) -> Path:
        return Path(self.tree) / "rootfs"


@dataclass(frozen=True, slots=True)
class PodPlan:
    uuid: str
    flavor: Flavor
    net: Net
    hostname: str
    apps: tuple[AppPlan, ...]
    volumes: tuple[Volume, ...]
    insecure: tuple[str, ...]  # --insecure-options names in force, recorded
    masked_paths: bool
    mds: bool = False  # serve the appc metadata service in the pod (--mds-register)
    selinux_mode: str = "off"  # enforce | permissive | off
    selinux_process: str | None = None  # the app processes' label (svirt, per-pod MCS)
    selinux_file: str | None = None  # the label of the pod's files

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PodPlan:
        raw: dict[str, Any] = json.loads(text)

        def app(a: dict[str, Any]) -> AppPlan:
            sec = a["seccomp"]
            return AppPlan(
                **{
                    **a,
                    "signers": tuple(a["signers"]),
                    "exec": tuple(a["exec"]),
                    "env": tuple(tuple(e) for e in a["env"]),
                    "capabilities": None if a["capabilities"] is None else tuple(a["capabilities"]),
                    "seccomp": None if sec is None else SeccompPlan.from_dict(sec),
                    "mounts": tuple(Mount(**m) for m in a["mounts"]),
                    "pre_start": tuple(tuple(h) for h in a.get("pre_start", ())),
                    "post_stop": tuple(tuple(h) for h in a.get("post_stop", ())),
                }
            )

        return cls(
            **{
                **raw,
                "apps": tuple(app(a) for a in raw["apps"]),
                "volumes": tuple(Volume(**v) for v in raw["volumes"]),
                "insecure": tuple(raw["insecure"]),
            }
        )

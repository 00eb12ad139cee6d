"""The run plan: everything the stage1 needs, computed by root at prepare time and kept in the
pod's root-only ``private/plan.json``, so ``run-prepared`` and ``enter`` apply the same."""

from __future__ import annotations

import json
from dataclasses import asdict, field
from pathlib import Path

from trustd.privileged.net.model import PodNetPlan
from trustd.shared._dataclass import frozen
from trustd.shared.codec import decode_json
from trustd.shared.request import Mount, Volume
from trustd.shared.vocab import Flavor, Net, SelinuxMode

_PLAN_HINT = "the pod plan is written by root at prepare time; prepare the pod again"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@frozen
class SeccompRulePlan:
    """One rule of a Docker-format profile, resolved: names sharing action, errno and args."""

    names: tuple[str, ...]
    action: str  # SCMP_ACT_*
    errno: int | None
    args: tuple[tuple[int, str, int, int], ...] = ()  # (index, SCMP_CMP_*, value, valueTwo)


@frozen
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


@frozen
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
    image_version: str | None = None  # the manifest's ``version`` label (exact policy scopes)
    # os/linux/no-new-privileges: False only when the image's isolator says so (and the
    # policy allows it, run.allow_new_privileges); the container flavor sets it otherwise
    no_new_privileges: bool = True
    # issue #13 (cli): rkt's per-app flags, or the image's own values
    supplementary_gids: tuple[int, ...] = ()
    oom_score_adj: int | None = None
    cpu_shares: int | None = None
    annotations: tuple[tuple[str, str], ...] = ()
    user_annotations: tuple[tuple[str, str], ...] = ()
    user_labels: tuple[tuple[str, str], ...] = ()

    @property
    def rootfs(self) -> Path:
        return Path(self.tree) / "rootfs"


@frozen
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
    selinux_mode: SelinuxMode = "off"
    selinux_process: str | None = None  # the app processes' label (svirt, per-pod MCS)
    selinux_file: str | None = None  # the label of the pod's files
    private_users: int | None = None  # --private-users: host uid/gid of the pod's root (shift)
    interactive: bool = False  # --interactive: the app's stdio is rkt's terminal, unprefixed
    ipc: str = "auto"  # "parent": the host's IPC namespace (--ipc), as the gate admitted
    overlay: bool = True  # False (--no-overlay): each app runs from a private copy of its tree
    # CNI networks, ports, DNS and hosts (trustd.privileged.net)
    network: PodNetPlan = field(default_factory=PodNetPlan)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "plan.json") -> PodPlan:
        """Strict: an unknown, missing or mistyped field is a DecodeError naming it."""
        return decode_json(text, cls, source, hint=_PLAN_HINT)

"""The pod requests the root program accepts: run, prepare, run-prepared, enter, stop, rm,
gc and export (re-exported by trustd/shared/request.py, the envelope)."""

from __future__ import annotations

from dataclasses import field
from typing import Literal

from trustd.shared._dataclass import frozen
from trustd.shared._request_checks import (
    _APP_NAME,
    CPU_SHARES,
    GID_MAX,
    IPC_MODES,
    NGROUPS_MAX,
    OOM_SCORE_ADJ,
    Ipc,
    _absolute,
    _in_range,
    _pairs,
    _uuid,
)
from trustd.shared.imageid import StoreKey
from trustd.shared.insecure import Insecure
from trustd.shared.net import NetOptions, check_hostname
from trustd.shared.vocab import Flavor, SelinuxMode


@frozen
class Volume:
    name: str
    kind: Literal["host", "empty"]
    source: str | None
    readonly: bool

    def __post_init__(self) -> None:
        if self.source is not None:
            _absolute(self.source, f"volume {self.name!r} source")


@frozen
class Mount:
    volume: str
    target: str
    readonly: bool = False  # the image's mountPoint said readOnly (the volume may too)


@frozen
class AppRequest:
    image: str  # a full image ID: sha512- and 128 hex digits
    # the name[:version] the user asked for, when they gave one: the image's own verified
    # manifest must say the same (the front end resolved it in the group-writable index)
    expected_name: str | None = None
    expected_version: str | None = None
    name: str | None = None
    exec: tuple[str, ...] | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    user: str | None = None
    group: str | None = None
    working_dir: str | None = None
    readonly_rootfs: bool = False
    mounts: tuple[Mount, ...] = ()
    caps_retain: tuple[str, ...] = ()
    caps_remove: tuple[str, ...] = ()
    seccomp: str | None = None  # rkt's --seccomp syntax
    memory: str | None = None
    cpu: str | None = None
    # rkt's per-app flags of issue #13 (None: the image's own value, if any)
    supplementary_gids: tuple[int, ...] | None = None
    annotations: tuple[tuple[str, str], ...] = ()
    user_annotations: tuple[tuple[str, str], ...] = ()
    user_labels: tuple[tuple[str, str], ...] = ()
    cpu_shares: int | None = None
    oom_score_adj: int | None = None

    def __post_init__(self) -> None:
        StoreKey(self.image)  # ValueError: refused with the field's path
        if self.name is not None and not _APP_NAME.fullmatch(self.name):
            raise ValueError(f"app name {self.name!r} is not an AC Name (lower case, digits, -)")
        _pairs(self.env, "environment variable", env=True)
        _pairs(self.annotations, "annotation")
        _pairs(self.user_annotations, "user annotation")
        _pairs(self.user_labels, "user label")
        gids = self.supplementary_gids or ()
        if len(gids) > NGROUPS_MAX or any(not 0 <= g <= GID_MAX for g in gids):
            raise ValueError(f"supplementary gids must be at most {NGROUPS_MAX} of 0..{GID_MAX}")
        _in_range(self.cpu_shares, CPU_SHARES, "cpu shares")
        _in_range(self.oom_score_adj, OOM_SCORE_ADJ, "oom score adjustment")
        for m in self.mounts:
            _absolute(m.target, f"mount target of volume {m.volume!r}")


@frozen
class RunRequest:
    """A pod to prepare (and maybe run): its apps by store key, and the run options."""

    apps: tuple[AppRequest, ...]
    flavor: Flavor = "container"
    network: NetOptions = field(default_factory=NetOptions)  # --net, --port, --dns*, --hosts-entry
    hostname: str | None = None
    volumes: tuple[Volume, ...] = ()
    insecure: Insecure = Insecure.NONE
    mds_register: bool = False
    selinux: SelinuxMode = "permissive"  # the policy decides the mode in force per scope
    private_users: bool = False  # --private-users: a fresh user namespace (uid range)
    interactive: bool = False  # --interactive: one app, its stdio rkt's own (no prefix)
    # pod-level flags of issue #13, in rkt's precedence (later wins): inherited environment
    # (--inherit-env: the caller's, captured by the front end), the image's, ``env``
    # (--set-env-file, then --set-env), then each app's --environment
    inherited_env: tuple[tuple[str, str], ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    mounts: tuple[Mount, ...] = ()  # --mount before any image: every app
    ipc: Ipc = "auto"  # parent: the host's IPC namespace
    overlay: bool = True  # --no-overlay: each app gets a private copy of its tree

    def __post_init__(self) -> None:
        _pairs(self.inherited_env, "inherited environment variable", env=True)
        _pairs(self.env, "environment variable", env=True)
        if self.private_users and not self.overlay:
            raise ValueError(
                "--private-users needs the overlay: a --no-overlay copy would have to be chowned"
            )
        if self.ipc not in IPC_MODES:
            raise ValueError(f"--ipc {self.ipc!r} is not one of {', '.join(IPC_MODES)}")
        for m in self.mounts:
            _absolute(m.target, f"mount target of volume {m.volume!r}")
        if self.hostname is not None:
            check_hostname(self.hostname)


@frozen
class Run:
    """``rkt run``: prepare, measure and run a pod; the process's exit status is the pod's."""

    kind: Literal["run"]
    pod: RunRequest
    uuid_file: str | None = None

    def __post_init__(self) -> None:
        if self.uuid_file is not None:
            _absolute(self.uuid_file, "--uuid-file-save")


@frozen
class Prepare:
    kind: Literal["prepare"]
    pod: RunRequest


@frozen
class RunPrepared:
    kind: Literal["run-prepared"]
    uuid: str
    mds_register: bool = False
    interactive: bool = False
    network: NetOptions | None = None  # None: as prepared (rkt's run-prepared default: default)
    hostname: str | None = None
    ipc: Ipc | None = None  # None: as prepared; the policy gates parent as for run

    def __post_init__(self) -> None:
        _uuid(self.uuid)
        if self.ipc is not None and self.ipc not in IPC_MODES:
            raise ValueError(f"--ipc {self.ipc!r} is not one of {', '.join(IPC_MODES)}")
        if self.hostname is not None:
            check_hostname(self.hostname)


@frozen
class Enter:
    kind: Literal["enter"]
    uuid: str
    app: str | None = None
    command: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _uuid(self.uuid)


@frozen
class Stop:
    kind: Literal["stop"]
    uuids: tuple[str, ...]
    force: bool = False

    def __post_init__(self) -> None:
        for uuid in self.uuids:
            _uuid(uuid)


@frozen
class Remove:
    kind: Literal["rm"]
    uuids: tuple[str, ...]

    def __post_init__(self) -> None:
        for uuid in self.uuids:
            _uuid(uuid)


@frozen
class CollectPods:
    """``rkt gc``: exited pods to garbage, garbage past the grace period removed."""

    kind: Literal["gc"]
    grace_seconds: int
    expire_prepared_seconds: int
    mark_only: bool = False


@frozen
class Export:
    kind: Literal["export"]
    uuid: str
    app: str | None
    output: str
    overwrite: bool = False

    def __post_init__(self) -> None:
        _uuid(self.uuid)
        _absolute(self.output, "the output file")

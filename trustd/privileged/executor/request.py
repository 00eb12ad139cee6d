"""The small typed request the executor accepts: image IDs and run options, nothing else.

Whatever fetched the images hands over only their store keys; the executor re-reads and
re-checks everything else itself (ADR 0005, ADR 0006).
"""

from __future__ import annotations

from dataclasses import dataclass

from trustd.privileged.executor.plan import Flavor, Mount, Net, Volume
from trustd.shared.insecure import Insecure


@dataclass(frozen=True, slots=True)
class AppRequest:
    image: str  # the full image ID (sha512- and 128 hex; checked as a StoreKey)
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


@dataclass(frozen=True, slots=True)
class RunRequest:
    apps: tuple[AppRequest, ...]
    flavor: Flavor = "container"
    net: Net = "default"
    hostname: str | None = None
    volumes: tuple[Volume, ...] = ()
    insecure: Insecure = Insecure.NONE
    mds_register: bool = False
    selinux: str = "permissive"  # enforce | permissive | off (the policy layer will decide)

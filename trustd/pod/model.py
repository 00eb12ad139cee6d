"""What a pod's record says: what ran, from which verified image, with which isolation."""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from typing import Any


class PodState(enum.StrEnum):
    EMBRYO = "embryo"
    PREPARING = "preparing"
    ABORTED_PREPARE = "aborted prepare"
    PREPARED = "prepared"
    RUNNING = "running"
    EXITED = "exited"
    DELETING = "deleting"
    EXITED_GARBAGE = "exited garbage"
    GARBAGE = "garbage"


@dataclass(frozen=True, slots=True)
class Isolation:
    """The isolation actually applied to one app (recorded, later measured)."""

    flavor: str
    namespaces: tuple[str, ...]
    seccomp: str  # source description, or "disabled (--insecure-options=seccomp)"
    seccomp_digest: str
    capabilities: tuple[str, ...]
    no_new_privs: bool
    memory: int | None = None
    cpu_millis: int | None = None
    masked_paths: bool = True


@dataclass(frozen=True, slots=True)
class AppRecord:
    name: str
    image_key: str
    image_name: str
    signers: tuple[str, ...]
    insecure_image: bool
    exec: tuple[str, ...]
    user: str
    group: str
    isolation: Isolation
    exit_code: int | None = None


@dataclass(frozen=True, slots=True)
class PodRecord:
    """``record.json`` in the pod directory: the audit trail of one pod."""

    uuid: str
    created: str
    apps: tuple[AppRecord, ...]
    hostname: str
    net: str
    insecure_options: tuple[str, ...] = ()
    started: str | None = None
    finished: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PodRecord:
        raw = json.loads(text)
        apps = tuple(
            AppRecord(
                **{
                    **a,
                    "signers": tuple(a["signers"]),
                    "exec": tuple(a["exec"]),
                    "isolation": Isolation(
                        **{
                            **a["isolation"],
                            "namespaces": tuple(a["isolation"]["namespaces"]),
                            "capabilities": tuple(a["isolation"]["capabilities"]),
                        }
                    ),
                }
            )
            for a in raw["apps"]
        )
        return cls(
            **{**raw, "apps": apps, "insecure_options": tuple(raw.get("insecure_options", ()))}
        )

"""The one request the root program accepts (ADR 0010): typed, strictly decoded, size-capped.

The front end (``rkt`` as root) fetches in an unprivileged child, then execs
``python -I -m trustd.privileged.main --request-fd N`` and writes one :class:`Envelope` to
that descriptor. Images travel as full image IDs only (``sha512-`` and all 128 hex digits of
the digest), never as names, ID prefixes or paths into the store: whatever the index says is
resolved on the unprivileged side. Root derives the store key (rkt's 64-hex prefix) from the ID
itself, and re-reads, re-hashes against the whole digest and re-verifies the bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from trustd.shared.codec import DecodeError, decode_json
from trustd.shared.codec import encode as encode_doc
from trustd.shared.errors import UserError
from trustd.shared.imageid import StoreKey, store_key
from trustd.shared.insecure import Insecure
from trustd.shared.net import NetOptions, check_hostname
from trustd.shared.vocab import Flavor, SelinuxMode

MAX_REQUEST_BYTES = 1 << 20
VERSION: Literal[1] = 1
ENTRY_MODULE = "trustd.privileged.main"
# The only variables the root program keeps from its caller's environment (PATH is set anew).
ROOT_ENVIRONMENT = ("TERM", "LANG", "LC_ALL", "TRUSTD_TCTI", "TRUSTD_DEBUG")
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_UUID_PREFIX = re.compile(r"[0-9a-f][0-9a-f-]{0,35}")
_APP_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
# What an app's environment, annotation and label may hold (root re-checks each, whatever
# the front end did): a name without "=" or NUL, a value without NUL.
MAX_NAME = 1024
MAX_VALUE = 128 << 10
Ipc = Literal["auto", "private", "parent"]
IPC_MODES: tuple[Ipc, ...] = ("auto", "private", "parent")
GID_MAX = 2**32 - 2  # (gid_t)-1 means "no change" to setgroups/setgid
NGROUPS_MAX = 65536
OOM_SCORE_ADJ = (-1000, 1000)
CPU_SHARES = (2, 262144)  # cgroup v1 cpu.shares bounds (appc os/linux/cpu-shares)


def _absolute(path: str, what: str) -> None:
    if not path.startswith("/") or "\0" in path:
        raise ValueError(f"{what} must be an absolute path, not {path!r}")


def _pairs(pairs: tuple[tuple[str, str], ...], what: str, *, env: bool = False) -> None:
    for name, value in pairs:
        bad = not name or len(name) > MAX_NAME or "\0" in name or (env and "=" in name)
        if bad:
            raise ValueError(f"{what} name {name[:80]!r} is empty, too long or has = or NUL")
        if len(value) > MAX_VALUE or "\0" in value:
            raise ValueError(f"{what} {name[:80]!r}: its value is over {MAX_VALUE} or has NUL")


def _in_range(value: int | None, bounds: tuple[int, int], what: str) -> None:
    if value is not None and not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{what} {value} is not in {bounds[0]}..{bounds[1]}")


def check_image_id(value: str) -> str:
    """``value`` if it is exactly a full image ID, else :class:`UserError` (never a path)."""
    return StoreKey.parse(value).id


@dataclass(frozen=True, slots=True)
class Volume:
    name: str
    kind: Literal["host", "empty"]
    source: str | None
    readonly: bool

    def __post_init__(self) -> None:
        if self.source is not None:
            _absolute(self.source, f"volume {self.name!r} source")


@dataclass(frozen=True, slots=True)
class Mount:
    volume: str
    target: str
    readonly: bool = False  # the image's mountPoint said readOnly (the volume may too)


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
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


def _uuid(value: str) -> None:
    if not _UUID_PREFIX.fullmatch(value):
        raise ValueError(f"{value[:80]!r} is not a pod UUID (prefix)")


@dataclass(frozen=True, slots=True)
class Run:
    """``rkt run``: prepare, measure and run a pod; the process's exit status is the pod's."""

    kind: Literal["run"]
    pod: RunRequest
    uuid_file: str | None = None

    def __post_init__(self) -> None:
        if self.uuid_file is not None:
            _absolute(self.uuid_file, "--uuid-file-save")


@dataclass(frozen=True, slots=True)
class Prepare:
    kind: Literal["prepare"]
    pod: RunRequest


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class Enter:
    kind: Literal["enter"]
    uuid: str
    app: str | None = None
    command: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _uuid(self.uuid)


@dataclass(frozen=True, slots=True)
class Stop:
    kind: Literal["stop"]
    uuids: tuple[str, ...]
    force: bool = False

    def __post_init__(self) -> None:
        for uuid in self.uuids:
            _uuid(uuid)


@dataclass(frozen=True, slots=True)
class Remove:
    kind: Literal["rm"]
    uuids: tuple[str, ...]

    def __post_init__(self) -> None:
        for uuid in self.uuids:
            _uuid(uuid)


@dataclass(frozen=True, slots=True)
class CollectPods:
    """``rkt gc``: exited pods to garbage, garbage past the grace period removed."""

    kind: Literal["gc"]
    grace_seconds: int
    expire_prepared_seconds: int
    mark_only: bool = False


@dataclass(frozen=True, slots=True)
class Export:
    kind: Literal["export"]
    uuid: str
    app: str | None
    output: str
    overwrite: bool = False

    def __post_init__(self) -> None:
        _uuid(self.uuid)
        _absolute(self.output, "the output file")


@dataclass(frozen=True, slots=True)
class Render:
    """``rkt image render|extract``: a re-verified copy of an image, written to ``dest``."""

    kind: Literal["render"]
    image: str
    dest: str
    rootfs_only: bool
    overwrite: bool = False
    allow_insecure: bool = False

    def __post_init__(self) -> None:
        StoreKey(self.image)  # ValueError: refused with the field's path
        _absolute(self.dest, "the destination directory")


@dataclass(frozen=True, slots=True)
class ExportImage:
    """``rkt image export``: the stored archive, uncompressed, written to ``output``."""

    kind: Literal["image-export"]
    image: str
    output: str
    overwrite: bool = False

    def __post_init__(self) -> None:
        StoreKey(self.image)  # ValueError: refused with the field's path
        _absolute(self.output, "the output file")


@dataclass(frozen=True, slots=True)
class PodReferences:
    """``rkt image gc|rm``, first step: which images pods reference and root's last-use
    stamps, printed as one :class:`ImageUse` (JSON) for the front end's index part."""

    kind: Literal["pod-references"]


@dataclass(frozen=True, slots=True)
class ImageUse:
    """The answer to :class:`PodReferences`: image key (either form) -> pod UUIDs, and full
    image ID -> root's last use."""

    references: Mapping[str, tuple[str, ...]]
    used: Mapping[str, datetime]


def pods_using(references: Mapping[str, Sequence[str]], full_id: str) -> list[str]:
    """The pods referencing the image with this full ID (under either form of its key)."""
    return sorted({*references.get(full_id, ()), *references.get(store_key(full_id), ())})


@dataclass(frozen=True, slots=True)
class CollectTrees:
    """``rkt image gc``, root's part after the index part: the rendered trees and last-use
    stamps of images neither in ``remaining`` (full IDs still in the store) nor referenced
    by a pod go, as do stale render stages, the old ``cas/tree`` and stale imports."""

    kind: Literal["image-gc"]
    remaining: tuple[str, ...]

    def __post_init__(self) -> None:
        for image in self.remaining:
            StoreKey(image)


@dataclass(frozen=True, slots=True)
class RemoveTrees:
    """``rkt image rm``, root's part after the index part: the removed images' rendered
    trees and last-use stamps (kept while a pod references the image)."""

    kind: Literal["image-rm-trees"]
    images: tuple[str, ...]

    def __post_init__(self) -> None:
        for image in self.images:
            StoreKey(image)


@dataclass(frozen=True, slots=True)
class AttestStatus:
    kind: Literal["attest-status"]


@dataclass(frozen=True, slots=True)
class AttestStopTpm:
    """``rkt attest stop-tpm``: stop the data dir's embedded swtpm (its PCRs are lost)."""

    kind: Literal["attest-stop-tpm"]


@dataclass(frozen=True, slots=True)
class AttestKey:
    """``rkt attest ak``: the attestation key's public part, written to ``out``."""

    kind: Literal["attest-ak"]
    out: str

    def __post_init__(self) -> None:
        _absolute(self.out, "--out")


@dataclass(frozen=True, slots=True)
class AttestQuote:
    kind: Literal["attest-quote"]
    nonce: str  # hex
    pcrs: tuple[int, ...] | None  # None: the measurement PCR
    out: str

    def __post_init__(self) -> None:
        _absolute(self.out, "--out")
        bytes.fromhex(self.nonce)  # ValueError: refused with the field's path


@dataclass(frozen=True, slots=True)
class AttestIdentity:
    """``rkt attest identity``: the EK, its NV certificate and the AK, written into ``out``."""

    kind: Literal["attest-identity"]
    out: str

    def __post_init__(self) -> None:
        _absolute(self.out, "--out")


@dataclass(frozen=True, slots=True)
class AttestActivate:
    """``rkt attest activate``: TPM2_ActivateCredential of a verifier's challenge (read by the
    caller: tpm2-tools' credential-blob file, hex); the secret is written to ``out``."""

    kind: Literal["attest-activate"]
    credential: str  # hex
    out: str

    def __post_init__(self) -> None:
        _absolute(self.out, "--out")
        if len(self.credential) > 4096:
            raise ValueError("a credential blob is at most 2048 bytes")
        bytes.fromhex(self.credential)


@dataclass(frozen=True, slots=True)
class AttestServe:
    """``rkt attest serve``: root answers quote challenges that an unprivileged HTTPS server
    (``rkt-attest``) forwards to it over a pipe (trustd/privileged/executor/_attestd.py)."""

    kind: Literal["attest-serve"]
    host: str
    port: int
    cert: str  # PEM certificate chain of the server
    key: str  # its PEM private key
    client_ca: str | None  # mutual TLS: PEM CA bundle client certificates must chain to
    quotes_per_minute: int

    def __post_init__(self) -> None:
        for name in ("cert", "key", "client_ca"):
            if getattr(self, name) is not None:
                _absolute(getattr(self, name), f"--{name.replace('_', '-')}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not 0-65535")
        if not 1 <= self.quotes_per_minute <= 600:
            raise ValueError(f"{self.quotes_per_minute} quotes a minute: give 1 to 600")


@dataclass(frozen=True, slots=True)
class MetadataServiceStart:
    """``rkt metadata-service``: root binds the registration and HTTP sockets, then becomes
    the unprivileged host daemon (rkt-mds; trustd/privileged/executor/_mdsd.py)."""

    kind: Literal["metadata-service"]
    address: str
    port: int

    def __post_init__(self) -> None:
        import ipaddress  # noqa: PLC0415

        try:
            ipaddress.ip_address(self.address)
        except ValueError as exc:
            raise ValueError(
                f"--listen-address {self.address[:80]!r} is not an IP address"
            ) from exc
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not 0-65535")


Request = (
    Run
    | Prepare
    | RunPrepared
    | Enter
    | Stop
    | Remove
    | CollectPods
    | Export
    | Render
    | ExportImage
    | PodReferences
    | CollectTrees
    | RemoveTrees
    | AttestStatus
    | AttestKey
    | AttestQuote
    | AttestStopTpm
    | AttestIdentity
    | AttestActivate
    | AttestServe
    | MetadataServiceStart
)


@dataclass(frozen=True, slots=True)
class Dirs:
    system_config: str
    local_config: str
    data: str

    def __post_init__(self) -> None:
        for name in ("system_config", "local_config", "data"):
            _absolute(getattr(self, name), name.replace("_", "-"))


@dataclass(frozen=True, slots=True)
class Envelope:
    version: Literal[1]
    command: str  # the verb, for messages (``run: ...``)
    dirs: Dirs
    request: Request
    debug: bool = False
    insecure: Insecure = Insecure.NONE


def encode(envelope: Envelope) -> bytes:
    data = json.dumps(encode_doc(envelope), sort_keys=True).encode()
    if len(data) > MAX_REQUEST_BYTES:
        raise UserError(
            f"the request to the root program is {len(data)} bytes, over {MAX_REQUEST_BYTES}",
            hint="pass fewer or shorter arguments and environment values",
        )
    return data


def encode_use(use: ImageUse) -> str:
    return json.dumps(encode_doc(use), sort_keys=True)


def decode_use(data: str) -> ImageUse:
    """The root program's :class:`ImageUse` answer, decoded strictly."""
    return decode_json(data, ImageUse, "the root program's pod references")


def decode(data: bytes) -> Envelope:
    """The one envelope in ``data``; anything else is a :class:`UserError` naming the field."""
    if len(data) > MAX_REQUEST_BYTES:
        raise UserError(f"request over {MAX_REQUEST_BYTES} bytes refused")
    try:
        return decode_json(data, Envelope, "the request to the root program")
    except DecodeError as exc:
        raise UserError(exc.message, hint="the root program is entered through rkt only") from exc

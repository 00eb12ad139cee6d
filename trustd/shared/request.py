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
from typing import Literal

from trustd.shared._dataclass import frozen
from trustd.shared._request_checks import (
    CPU_SHARES,
    GID_MAX,
    IPC_MODES,
    MAX_NAME,
    MAX_VALUE,
    NGROUPS_MAX,
    OOM_SCORE_ADJ,
    Ipc,
    _absolute,
    check_image_id,
)
from trustd.shared._request_host import (
    AttestActivate,
    AttestIdentity,
    AttestKey,
    AttestQuote,
    AttestServe,
    AttestStatus,
    AttestStopTpm,
    CollectTrees,
    ExportImage,
    ImageUse,
    MetadataServiceStart,
    PodReferences,
    RemoveTrees,
    Render,
    pods_using,
)
from trustd.shared._request_pod import (
    AppRequest,
    CollectPods,
    Enter,
    Export,
    Mount,
    Prepare,
    Remove,
    Run,
    RunPrepared,
    RunRequest,
    Stop,
    Volume,
)
from trustd.shared.codec import DecodeError, decode_json
from trustd.shared.codec import encode as encode_doc
from trustd.shared.errors import UserError
from trustd.shared.insecure import Insecure

MAX_REQUEST_BYTES = 1 << 20
VERSION: Literal[1] = 1
ENTRY_MODULE = "trustd.privileged.main"
# The only variables the root program keeps from its caller's environment (PATH is set anew).
ROOT_ENVIRONMENT = ("TERM", "LANG", "LC_ALL", "TRUSTD_TCTI", "TRUSTD_DEBUG")
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

__all__ = [
    "CPU_SHARES",
    "ENTRY_MODULE",
    "GID_MAX",
    "IPC_MODES",
    "MAX_NAME",
    "MAX_REQUEST_BYTES",
    "MAX_VALUE",
    "NGROUPS_MAX",
    "OOM_SCORE_ADJ",
    "ROOT_ENVIRONMENT",
    "ROOT_PATH",
    "VERSION",
    "AppRequest",
    "AttestActivate",
    "AttestIdentity",
    "AttestKey",
    "AttestQuote",
    "AttestServe",
    "AttestStatus",
    "AttestStopTpm",
    "CollectPods",
    "CollectTrees",
    "Dirs",
    "Enter",
    "Envelope",
    "Export",
    "ExportImage",
    "ImageUse",
    "Ipc",
    "MetadataServiceStart",
    "Mount",
    "PodReferences",
    "Prepare",
    "Remove",
    "RemoveTrees",
    "Render",
    "Request",
    "Run",
    "RunPrepared",
    "RunRequest",
    "Stop",
    "Volume",
    "check_image_id",
    "decode",
    "decode_use",
    "encode",
    "encode_use",
    "pods_using",
]


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


@frozen
class Dirs:
    system_config: str
    local_config: str
    data: str

    def __post_init__(self) -> None:
        for name in ("system_config", "local_config", "data"):
            _absolute(getattr(self, name), name.replace("_", "-"))


@frozen
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

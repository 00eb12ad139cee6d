"""The signed JSON payload of containers/image simple signing (docs/containers-signature.5)
and of sigstore (cosign) signatures, which reuse it with another ``critical.type``.

Parsing follows containers/image's paranoid rules: ``critical`` holds exactly ``type``,
``image`` and ``identity``; ``image`` exactly ``docker-manifest-digest``; ``identity``
exactly ``docker-reference``; no key may appear twice at any level. ``optional`` must be
there for simple signing (an object, whose ``creator`` and ``timestamp`` are read and every
other field kept); a sigstore payload may have ``"optional": null``. Every failure is one
``MalformedSignatureError`` naming the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import field
from typing import Any, Literal

from trustd.shared._dataclass import frozen
from trustd.shared.errors import BadSignatureError, excerpt
from trustd.shared.ocisig.name import DockerReference

SIMPLE_TYPE = "atomic container signature"
SIGSTORE_TYPE = "cosign container image signature"
Format = Literal["simple-signing", "sigstore"]
TYPES: Mapping[Format, str] = {"simple-signing": SIMPLE_TYPE, "sigstore": SIGSTORE_TYPE}
MAX_PAYLOAD = 64 * 1024
_DIGEST = re.compile(r"(sha256:[a-f0-9]{64})|(sha512:[a-f0-9]{128})", re.ASCII)


class MalformedSignatureError(BadSignatureError):
    """A signature whose signed payload is not a containers/image signature payload."""


@frozen
class SigningPayload:
    """What a signer vouched for: this manifest digest is the image named ``docker_reference``."""

    docker_reference: str
    manifest_digest: str
    format: Format
    creator: str | None = None
    timestamp: int | float | None = None
    optional: Mapping[str, Any] = field(default_factory=dict)  # every optional field, kept

    @property
    def reference(self) -> DockerReference:
        return DockerReference.parse(self.docker_reference)


def _bad(what: str, why: str) -> MalformedSignatureError:
    return MalformedSignatureError(
        f"the signature's payload is malformed: {what} {why}",
        hint="the signature was not made by skopeo, podman or cosign, or was altered; "
        "ask the publisher to sign the image again",
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _bad(f"key {excerpt(key)}", "appears twice")
        out[key] = value
    return out


def _exact(obj: object, where: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _bad(where, "is not a JSON object")
    missing = [k for k in keys if k not in obj]
    extra = sorted(set(obj) - set(keys))
    if missing:
        raise _bad(where, f"lacks {missing[0]!r}")
    if extra:
        raise _bad(where, f"has the unknown field {excerpt(extra[0])}")
    return obj


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise _bad(where, "is not a string")
    return value


def _optional(obj: object, fmt: Format) -> tuple[str | None, int | float | None, dict[str, Any]]:
    if obj is None and fmt == "sigstore":
        return None, None, {}
    if not isinstance(obj, dict):
        raise _bad('"optional"', "is not a JSON object")
    creator = obj.get("creator")
    if creator is not None and not isinstance(creator, str):
        raise _bad('"optional.creator"', "is not a string")
    stamp = obj.get("timestamp")
    if stamp is not None and (isinstance(stamp, bool) or not isinstance(stamp, int | float)):
        raise _bad('"optional.timestamp"', "is not a number")
    return creator, stamp, dict(obj)


def parse_payload(data: bytes, fmt: Format = "simple-signing") -> SigningPayload:
    """The payload's fields, or MalformedSignatureError. Call only on *verified* bytes."""
    if len(data) > MAX_PAYLOAD:
        raise _bad("the payload", f"is {len(data)} bytes (at most {MAX_PAYLOAD})")
    try:
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _bad("the payload", f"is not JSON ({exc})") from exc
    keys = ("critical", "optional") if fmt == "simple-signing" or _has(doc, "optional") else ()
    top = _exact(doc, "the payload", keys or ("critical",))
    critical = _exact(top["critical"], '"critical"', ("type", "image", "identity"))
    kind = _string(critical["type"], '"critical.type"')
    if kind != TYPES[fmt]:
        raise _bad('"critical.type"', f"is {excerpt(kind)}, not {TYPES[fmt]!r}")
    image = _exact(critical["image"], '"critical.image"', ("docker-manifest-digest",))
    digest = _string(image["docker-manifest-digest"], '"critical.image.docker-manifest-digest"')
    if not _DIGEST.fullmatch(digest):
        raise _bad('"critical.image.docker-manifest-digest"', f"{excerpt(digest)} is no digest")
    identity = _exact(critical["identity"], '"critical.identity"', ("docker-reference",))
    ref = _string(identity["docker-reference"], '"critical.identity.docker-reference"')
    try:
        DockerReference.parse(ref)
    except BadSignatureError:
        raise
    except Exception as exc:
        raise _bad('"critical.identity.docker-reference"', str(exc)) from exc
    creator, stamp, optional = _optional(top.get("optional"), fmt)
    return SigningPayload(ref, digest, fmt, creator, stamp, optional)


def _has(doc: object, key: str) -> bool:
    return isinstance(doc, dict) and key in doc


def build_payload(
    docker_reference: str,
    manifest_digest: str,
    fmt: Format = "simple-signing",
    *,
    optional: Mapping[str, Any] | None = None,
) -> bytes:
    """The payload a signer signs (tests, ``rkt`` never signs): compact, keys sorted."""
    doc = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": manifest_digest},
            "type": TYPES[fmt],
        },
        "optional": dict(optional)
        if optional is not None
        else ({} if fmt == "simple-signing" else None),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

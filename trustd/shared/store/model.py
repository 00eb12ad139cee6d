"""What the image store records about an image, and the one way an image gets admitted."""

from __future__ import annotations

import re
from dataclasses import field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, TypeGuard

from trustd.shared._dataclass import frozen
from trustd.shared.codec import decode_doc, decode_json
from trustd.shared.imageid import ID_PREFIX, KEY_HEX, StoreKey, store_key

if TYPE_CHECKING:  # annotations only: an index lookup loads neither the ACI reader nor OpenPGP
    from trustd.shared.appc.aci import AciInfo
    from trustd.shared.verify import VerifiedSignature

SHORT_HEX = 32  # rkt's short form on the command line
_HINT = "the store index was altered; remove the image (rkt image rm ID) and fetch it again"

DIGEST_HEX = 128
_INDEX_KEY = re.compile(r"sha512-[0-9a-f]{64}", re.ASCII)
_DIGEST = re.compile(r"[0-9a-f]{128}", re.ASCII)

# Only trustd.shared.store.admit holds this (CONVENTIONS 4).
_ADMIT_TOKEN = object()


def index_key_ok(key: object, digest: object) -> bool:
    """:func:`check_index_key`'s test without the reason: ``digest`` is 128 lower-case hex
    and ``key`` is exactly ``sha512-`` and its first 64 (which implies the key's grammar)."""
    return (
        type(digest) is str
        and _DIGEST.fullmatch(digest) is not None
        and type(key) is str
        and key == f"{ID_PREFIX}{digest[:KEY_HEX]}"
    )


def is_index_key(key: object) -> TypeGuard[str]:
    """Whether ``key`` is rkt's ``sha512-<64 hex>`` image key."""
    return isinstance(key, str) and _INDEX_KEY.fullmatch(key) is not None


def check_index_key(key: object, digest: object) -> StoreKey:
    """An index row's ``key`` and ``digest`` as a :class:`StoreKey`; ValueError unless the key
    is exactly rkt's ``sha512-<64 hex>`` form of that digest."""
    if not is_index_key(key):
        raise ValueError(f"bad image key {key!r:.80}")
    if not (isinstance(digest, str) and _DIGEST.fullmatch(digest)):
        raise ValueError(f"bad digest {digest!r:.80}")
    full = StoreKey(ID_PREFIX + digest)
    if full.blob_name != key:
        raise ValueError(f"key {key[:39]}… is not the digest's ({full.blob_name[:39]}…)")
    return full


@frozen
class Provenance:
    """Why the store believes an image: who signed it, or that the user opted out."""

    signers: tuple[str, ...]  # primary fingerprints that verified it
    insecure: bool  # imported with --insecure-options=image
    verified_at: str  # ISO time of the verification
    trusted_via: str = ""
    source_digest: str = ""  # e.g. a docker manifest digest (sha256:...) it was converted from
    signature_format: str = ""  # "" (an ACI's OpenPGP signature), "simple-signing", "sigstore"
    docker_reference: str = ""  # the name a docker image's signature vouches for

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "signers": list(self.signers),
            "insecure": self.insecure,
            "verified_at": self.verified_at,
            "trusted_via": self.trusted_via,
            "source_digest": self.source_digest,
        }
        if self.signature_format:  # older readers keep decoding ACI provenance unchanged
            out["signature_format"] = self.signature_format
            out["docker_reference"] = self.docker_reference
        return out

    @classmethod
    def from_json(cls, obj: Any, source: str = "store index: provenance") -> Provenance:
        """Strict: an unknown, missing or mistyped field is a DecodeError naming it (a
        provenance that decoded loosely could turn ``"insecure": "false"`` into True)."""
        return _plain_provenance(obj) or decode_doc(obj, cls, source, hint=_HINT)

    @classmethod
    def decode(cls, text: str | bytes, source: str = "store index: provenance") -> Provenance:
        """:meth:`from_json` of the JSON text the index stores."""
        return decode_json(text, cls, source, hint=_HINT)


_PROVENANCE_KEYS = frozenset({"signers", "insecure", "verified_at", "trusted_via", "source_digest"})
_PROVENANCE_REQUIRED = frozenset({"signers", "insecure", "verified_at"})


def _plain_provenance(obj: Any) -> Provenance | None:
    """The provenance of a document that is plainly well-formed (exactly the fields, each of
    exactly its type: what the strict decoder accepts too), built without the decoder's
    generic walk (issue #14: ``rkt image list`` of 10,000 images); None for anything else,
    which the decoder then refuses with the field named."""
    if type(obj) is not dict or not _PROVENANCE_REQUIRED <= obj.keys() <= _PROVENANCE_KEYS:
        return None
    signers, insecure = obj["signers"], obj["insecure"]
    if type(signers) is not list or any(type(s) is not str for s in signers):
        return None
    strings = (obj["verified_at"], obj.get("trusted_via", ""), obj.get("source_digest", ""))
    if type(insecure) is not bool or any(type(v) is not str for v in strings):
        return None
    return Provenance(tuple(signers), insecure, *strings)


# A day inside datetime's range either side: a time rendered in any local zone (offsets are
# below a day) stays a datetime (red team 9: ``0001-01-01T00:00:00+23:59`` overflowed
# ``rkt image list --full``).
_EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
_LATEST = datetime(9999, 12, 30, tzinfo=UTC)


def index_time(text: object) -> datetime:
    """An index time as the writer stores it: ISO text with a UTC offset (a naive time fails
    every comparison and difference with the clock), within :data:`_EARLIEST`..``_LATEST``."""
    if type(text) is not str:
        raise TypeError(f"time {text!r:.40} is not text")
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"time {text!r:.40} has no UTC offset")
    if not _EARLIEST <= when <= _LATEST:
        raise ValueError(f"time {text!r:.40} is out of range")
    return when


# The provenance text exactly as the index's writer stores it (``json.dumps`` of
# :meth:`Provenance.to_json`: its separators, its key order, strings needing no escape).
# Text of this grammar is a JSON object of exactly those fields, each of its type, which
# the strict decoder takes; so a listing that shows no provenance checks a row's by this one
# match (issue #14: ``rkt image list`` of 10,000 images), and sends any other text to the
# decoder, which takes it or names what is wrong. tests/unit/store/test_index_fast_paths.py
# holds the grammar to the decoder.
_JSON_TEXT = r'"[^"\\\x00-\x1f]*"'  # a JSON string without escapes: no quote, backslash or C0
_PROVENANCE_TEXT = re.compile(
    rf'\{{"signers": \[(?:{_JSON_TEXT}(?:, {_JSON_TEXT})*)?\], "insecure": (?:true|false), '
    rf'"verified_at": {_JSON_TEXT}, "trusted_via": {_JSON_TEXT}, "source_digest": {_JSON_TEXT}'
    rf'(?:, "signature_format": {_JSON_TEXT}, "docker_reference": {_JSON_TEXT})?\}}'
)


def provenance_text_ok(text: object) -> bool:
    """Whether ``text`` is a provenance as the index's writer stores it (then
    :meth:`Provenance.from_json` of its JSON takes it); False says nothing either way."""
    return type(text) is str and _PROVENANCE_TEXT.fullmatch(text) is not None


RemoteRecord = tuple[str, str | None, int | None, datetime]
_FETCHED_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_FETCHED_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def remote_record(key: object, etag: object, max_age: object, when: object) -> RemoteRecord:
    """A record of a fetched URL (the index's ``remotes`` row, or root's own record) as the
    fetch writes it: the key, ETag, max-age and time, checked field by field (ValueError
    naming the first that is not)."""
    if not is_index_key(key):
        raise ValueError(f"bad image key {key!r:.80}")
    if not (etag is None or type(etag) is str):
        raise ValueError("the ETag is not text")
    if not (max_age is None or (type(max_age) is int and max_age >= 0)):
        raise ValueError("the max-age is not a count of seconds")
    stamped = datetime.fromisoformat(when)  # type: ignore[arg-type]  # TypeError: not text
    if stamped.tzinfo is None:
        raise ValueError("the download time has no zone")
    if not _FETCHED_EARLIEST <= stamped <= _FETCHED_LATEST:
        raise ValueError("the download time is out of range")
    # RFC 9111 section 1.2.2: a delta past 2**31 seconds (68 years) is taken as 2**31; with
    # the time's range that keeps the freshness arithmetic (time + max-age) off datetime's
    # limits
    return key, etag, None if max_age is None else min(max_age, 1 << 31), stamped


@frozen
class AdmittedImage:
    """An archive that passed inspection and the signature gate (or an explicit opt-out)."""

    info: AciInfo
    signature: VerifiedSignature | None
    provenance: Provenance
    _token: object = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._token is not _ADMIT_TOKEN:
            raise TypeError("AdmittedImage is made only by trustd.shared.store.admit")

    @property
    def key(self) -> str:
        return store_key(self.info.image_id)


@frozen
class ImageRecord:
    """One row of the store index."""

    key: str
    digest: str  # full sha512 hex of the uncompressed tar
    name: str
    labels: tuple[tuple[str, str], ...]
    import_time: datetime
    last_used: datetime
    size: int  # bytes of the original (as signed) archive
    uncompressed_size: int
    source: str
    provenance: Provenance

    def to_json(self) -> dict[str, Any]:
        """The record as it crosses from the unprivileged process (see :meth:`from_json`)."""
        return {
            "key": self.key,
            "digest": self.digest,
            "name": self.name,
            "labels": [list(lbl) for lbl in self.labels],
            "import_time": self.import_time.isoformat(),
            "last_used": self.last_used.isoformat(),
            "size": self.size,
            "uncompressed_size": self.uncompressed_size,
            "source": self.source,
            "provenance": self.provenance.to_json(),
        }

    @classmethod
    def from_json(cls, obj: Any) -> ImageRecord:
        """Strictly decoded (exact fields and types, the key grammar, times with a UTC offset
        in range: the lookup child's answer is the group's word); ValueError otherwise."""
        fields = {
            "key", "digest", "name", "labels", "import_time", "last_used", "size",
            "uncompressed_size", "source", "provenance",
        }  # fmt: skip
        if not isinstance(obj, dict) or set(obj) != fields:
            raise ValueError("not an image record")
        check_index_key(obj["key"], obj["digest"])
        labels = obj["labels"]
        if not isinstance(labels, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
            for p in labels
        ):
            raise ValueError("bad labels")
        texts = (obj["name"], obj["source"], obj["import_time"], obj["last_used"])
        sizes = (obj["size"], obj["uncompressed_size"])
        if not all(isinstance(t, str) for t in texts) or not all(
            type(n) is int and n >= 0 for n in sizes
        ):
            raise ValueError("bad field types")
        try:
            provenance = Provenance.from_json(obj["provenance"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"bad provenance: {exc}") from exc
        return cls(
            key=obj["key"],
            digest=obj["digest"],
            name=obj["name"],
            labels=tuple((k, v) for k, v in labels),
            import_time=index_time(obj["import_time"]),
            last_used=index_time(obj["last_used"]),
            size=obj["size"],
            uncompressed_size=obj["uncompressed_size"],
            source=obj["source"],
            provenance=provenance,
        )

    @property
    def full_key(self) -> StoreKey:
        """The full image ID, the form root takes (``sha512-`` and the 128-hex digest)."""
        return StoreKey(ID_PREFIX + self.digest)

    def label(self, name: str) -> str | None:
        return next((v for k, v in self.labels if k == name), None)


class ImageRow(NamedTuple):
    """What ``rkt image list``'s table shows of an index row (the fields of
    :class:`ImageRecord` it reads, under their names), decoded from a row whose every field,
    provenance included, passed what decoding an :class:`ImageRecord` checks: a plain tuple,
    no record or provenance object built (issue #14: 10,000 images)."""

    key: str
    name: str
    labels: tuple[tuple[str, str], ...]
    import_time: datetime
    last_used: datetime
    size: int
    source: str

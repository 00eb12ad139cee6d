"""The store, attestation and metadata-service requests the root program accepts (re-exported
by trustd/shared/request.py, the envelope)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal

from trustd.shared._dataclass import frozen
from trustd.shared._request_checks import _absolute
from trustd.shared.imageid import StoreKey, store_key


@frozen
class Render:
    """``rkt image render|extract``: a re-verified copy of an image, written to ``dest``."""

    kind: Literal["render"]
    image: str
    dest: str
    rootfs_only: bool
    overwrite: bool = False
    allow_insecure: bool = False
    # the name[:version] asked for, when one was: the front end resolved it in the group's
    # index, so root checks the image's own verified manifest says the same (red team 5)
    expected_name: str | None = None
    expected_version: str | None = None

    def __post_init__(self) -> None:
        StoreKey(self.image)  # ValueError: refused with the field's path
        _absolute(self.dest, "the destination directory")


@frozen
class ExportImage:
    """``rkt image export``: the stored archive, uncompressed, written to ``output``."""

    kind: Literal["image-export"]
    image: str
    output: str
    overwrite: bool = False
    expected_name: str | None = None  # as Render's: the stored manifest must say it
    expected_version: str | None = None

    def __post_init__(self) -> None:
        StoreKey(self.image)  # ValueError: refused with the field's path
        _absolute(self.output, "the output file")


@frozen
class PodReferences:
    """``rkt image gc|rm``, first step: which images pods reference and root's last-use
    stamps, printed as one :class:`ImageUse` (JSON) for the front end's index part."""

    kind: Literal["pod-references"]


@frozen
class ImageUse:
    """The answer to :class:`PodReferences`: image key (either form) -> pod UUIDs, and full
    image ID -> root's last use."""

    references: Mapping[str, tuple[str, ...]]
    used: Mapping[str, datetime]


def pods_using(references: Mapping[str, Sequence[str]], full_id: str) -> list[str]:
    """The pods referencing the image with this full ID (under either form of its key)."""
    return sorted({*references.get(full_id, ()), *references.get(store_key(full_id), ())})


@frozen
class CollectTrees:
    """``rkt image gc``, root's part after the index part: the rendered trees and last-use
    stamps of images neither in ``remaining`` (full IDs still in the store) nor referenced
    by a pod go, as do stale render stages, the old ``cas/tree`` and stale imports."""

    kind: Literal["image-gc"]
    remaining: tuple[str, ...]

    def __post_init__(self) -> None:
        for image in self.remaining:
            StoreKey(image)


@frozen
class RemoveTrees:
    """``rkt image rm``, root's part after the index part: the removed images' rendered
    trees and last-use stamps (kept while a pod references the image)."""

    kind: Literal["image-rm-trees"]
    images: tuple[str, ...]

    def __post_init__(self) -> None:
        for image in self.images:
            StoreKey(image)


@frozen
class AttestStatus:
    kind: Literal["attest-status"]


@frozen
class AttestStopTpm:
    """``rkt attest stop-tpm``: stop the data dir's embedded swtpm (its PCRs are lost)."""

    kind: Literal["attest-stop-tpm"]


@frozen
class AttestKey:
    """``rkt attest ak``: the attestation key's public part, written to ``out``."""

    kind: Literal["attest-ak"]
    out: str

    def __post_init__(self) -> None:
        _absolute(self.out, "--out")


@frozen
class AttestQuote:
    kind: Literal["attest-quote"]
    nonce: str  # hex
    pcrs: tuple[int, ...] | None  # None: the measurement PCR
    out: str

    def __post_init__(self) -> None:
        _absolute(self.out, "--out")
        bytes.fromhex(self.nonce)  # ValueError: refused with the field's path


@frozen
class AttestIdentity:
    """``rkt attest identity``: the EK, its NV certificate and the AK, written into ``out``."""

    kind: Literal["attest-identity"]
    out: str

    def __post_init__(self) -> None:
        _absolute(self.out, "--out")


@frozen
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


@frozen
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


@frozen
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

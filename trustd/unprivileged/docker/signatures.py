"""Reading an image's simple signatures from lookaside storage and checking them before any
layer is downloaded (the hook ``fetch.py`` calls once the manifest digest is known).

Where the signatures are comes from ``registries.d`` under trustd's config dirs (local
replaces system, like policy.toml); ``http(s)://`` lookaside goes through the transport with
its caps, ``file://`` lookaside is read here (for local layouts, ``oci:`` and
``docker-archive:``, and for registries whose signatures are mirrored to disk). Signature
``n+1`` is read only after ``n`` existed; the first missing one ends the list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from trustd.shared.errors import LocalStateError, TransportError, UserError
from trustd.shared.insecure import Insecure
from trustd.shared.keystore import Keystore
from trustd.shared.ocisig.evidence import Evidence
from trustd.shared.ocisig.identity import SignedIdentity
from trustd.shared.ocisig.name import DockerName, DockerReference
from trustd.shared.ocisig.registries_d import RegistriesD, signature_url
from trustd.shared.ocisig.simple import MAX_SIGNATURES, ImageSignature, verify_simple
from trustd.shared.policy import ImageRef
from trustd.unprivileged.transport._http import SIGNATURE_LIMITS, fetch

MAX_SIGNATURE = 1 << 20


@dataclass(frozen=True, slots=True)
class SignedImage:
    """The fetch side's verdict and the bytes root re-checks (see :func:`evidence_bytes`)."""

    reference: DockerReference  # what was asked for, normalized
    manifest: bytes
    manifest_digest: str
    signatures: tuple[ImageSignature, ...]
    messages: tuple[bytes, ...]
    rule: SignedIdentity

    @property
    def signers(self) -> tuple[str, ...]:
        return tuple(s.signer for s in self.signatures)

    def evidence(self) -> Evidence:
        """What the store keeps so root can verify again from bytes."""
        return Evidence(str(self.reference), self.manifest, self.messages)


def _read_file(url: str) -> bytes | None:
    path = Path(unquote(urlsplit(url).path))
    try:
        with path.open("rb") as f:
            data = f.read(MAX_SIGNATURE + 1)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise LocalStateError(
            f"cannot read signature {path}: {exc.strerror}",
            hint="check the lookaside directory's permissions",
        ) from exc
    if len(data) > MAX_SIGNATURE:
        raise TransportError(f"signature {path} is larger than {MAX_SIGNATURE} bytes")
    return data


def _read_http(url: str, insecure: Insecure) -> bytes | None:
    resp = fetch(url, limits=SIGNATURE_LIMITS, insecure=insecure)
    if resp.status == 404:
        return None
    if resp.status != 200:
        raise TransportError(
            f"{url}: expected a signature or 404 Not Found, got {resp.status}",
            hint="check the lookaside URL in registries.d",
        )
    return resp.body


def lookaside_signatures(
    base: str, name: DockerName, digest: str, insecure: Insecure
) -> list[bytes]:
    """signature-1, signature-2, ... until the first missing one (at most MAX_SIGNATURES+1)."""
    read: Callable[[str], bytes | None]
    if urlsplit(base).scheme.lower() == "file":
        read = _read_file
    else:
        read = lambda url: _read_http(url, insecure)  # noqa: E731
    out: list[bytes] = []
    for index in range(1, MAX_SIGNATURES + 2):
        data = read(signature_url(base, name, digest, index))
        if data is None:
            break
        out.append(data)
    return out


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """Built by the fetch workflow: the keystore, registries.d and the policy's identity rule."""

    keystore: Keystore
    registries: RegistriesD
    insecure: Insecure
    # the policy's require.signed_identity for the image's scope (by its AC name and tag)
    identity: Callable[[ImageRef], SignedIdentity] = lambda _ref: SignedIdentity()

    def applies(self, name: DockerName) -> bool:
        """Signatures are checked when some key is trusted for the name (a ``docker://``
        prefix key or a root key): then an image must verify, whatever else allows it."""
        return bool(self.keystore.keyring_for(name).keys)

    def verify(
        self, reference: DockerReference, manifest: bytes, digest: str, scope: ImageRef
    ) -> SignedImage:
        """Read the lookaside signatures of ``digest`` and verify them, or raise the refusal
        (``scope``: the name policy scopes match, for the identity rule)."""
        name = reference.name
        settings = self.registries.for_name(name)
        if settings.read is None:
            raise UserError(
                f"no signature storage is configured for {name}",
                hint="add a registries.d/*.yaml with a lookaside URL for it under the config "
                "dir (containers-registries.d(5)), or (not recommended) --insecure-options=image",
            )
        messages = lookaside_signatures(settings.read, name, digest, self.insecure)
        rule = self.identity(scope)
        found = verify_simple(
            messages,
            self.keystore.keyring_for(name),
            reference,
            digest,
            rule,
            where=f"{settings.read}/{name.path}@{digest.replace(':', '=')}",
        )
        return SignedImage(reference, manifest, digest, found, tuple(messages), rule)

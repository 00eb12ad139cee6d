"""Reading an image's simple signatures from lookaside storage and checking them before any
layer is downloaded (the hook ``fetch.py`` calls once the manifest digest is known).

Where the signatures are comes from ``registries.d`` under trustd's config dirs (local
replaces system, like policy.toml); ``http(s)://`` lookaside goes through the transport with
its caps, ``file://`` lookaside is read here (for local layouts, ``oci:`` and
``docker-archive:``, and for registries whose signatures are mirrored to disk). Signature
``n+1`` is read only after ``n`` existed; the first missing one ends the list.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from trustd.shared._dataclass import frozen
from trustd.shared.errors import LocalStateError, RemoteLiedError, TransportError, UserError
from trustd.shared.insecure import Insecure
from trustd.shared.keystore import Keystore
from trustd.shared.ocisig.evidence import Evidence
from trustd.shared.ocisig.identity import SignedIdentity
from trustd.shared.ocisig.name import DockerName, DockerReference
from trustd.shared.ocisig.payload import MAX_PAYLOAD
from trustd.shared.ocisig.registries_d import RegistriesD, signature_url
from trustd.shared.ocisig.sigstore import ANNOTATION
from trustd.shared.ocisig.simple import MAX_SIGNATURES, ImageSignature
from trustd.shared.ocisig.verify import SigstorePair, verify_image_signatures
from trustd.shared.policy import ImageRef
from trustd.unprivileged.transport._http import SIGNATURE_LIMITS, fetch

MAX_SIGNATURE = 1 << 20
Attachments = Callable[[str], list[tuple[bytes, str]]]  # manifest digest -> cosign pairs


@frozen
class SignedImage:
    """The fetch side's verdict and the bytes root re-checks (see :func:`evidence_bytes`)."""

    reference: DockerReference  # what was asked for, normalized
    manifest: bytes
    manifest_digest: str
    signatures: tuple[ImageSignature, ...]
    messages: tuple[bytes, ...]
    rule: SignedIdentity
    sigstore: tuple[SigstorePair, ...] = ()

    @property
    def signers(self) -> tuple[str, ...]:
        return tuple(s.signer for s in self.signatures)

    def evidence(self) -> Evidence:
        """What the store keeps so root can verify again from bytes."""
        return Evidence(str(self.reference), self.manifest, self.messages, sigstore=self.sigstore)


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


@frozen
class SignatureCheck:
    """Built by the fetch workflow: the keystore, registries.d and the policy's identity rule."""

    keystore: Keystore
    registries: RegistriesD
    insecure: Insecure
    # the policy's require.signed_identity for the image's scope (by its AC name and tag)
    identity: Callable[[ImageRef], SignedIdentity] = lambda _ref: SignedIdentity()

    def applies(self, name: DockerName) -> bool:
        """Signatures are checked when some key is trusted for the name (a ``docker://``
        prefix key, a sigstore key or a root key): then an image must verify, whatever else
        allows it."""
        return bool(self.keystore.keyring_for(name).keys or self.keystore.pem_keys_for(name))

    def verify(
        self,
        reference: DockerReference,
        manifest: bytes,
        digest: str,
        scope: ImageRef,
        attachments: Attachments | None = None,
    ) -> SignedImage:
        """Read the signatures of ``digest`` (lookaside; the ``.sig`` tag through
        ``attachments`` when registries.d asks for them or a sigstore key is trusted) and
        verify them, or raise the refusal (``scope``: the name policy scopes match)."""
        name = reference.name
        settings = self.registries.for_name(name)
        pem = [t.key for t in self.keystore.pem_keys_for(name)]
        use_sigstore = attachments is not None and (settings.attachments or bool(pem))
        if settings.read is None and not use_sigstore:
            raise UserError(
                f"no signature storage is configured for {name}",
                hint="add a registries.d/*.yaml with a lookaside URL for it under the config "
                "dir (containers-registries.d(5)), or (not recommended) --insecure-options=image",
            )
        messages = (
            lookaside_signatures(settings.read, name, digest, self.insecure)
            if settings.read
            else []
        )
        pairs = attachments(digest) if attachments is not None and use_sigstore else []
        rule = self.identity(scope)
        places = (
            [f"{settings.read}/{name.path}@{digest.replace(':', '=')}"] if settings.read else []
        )
        places += [f"the {cosign_tag(digest)} tag"] if use_sigstore else []
        found = verify_image_signatures(
            messages,
            pairs,
            self.keystore.keyring_for(name),
            pem,
            reference,
            manifest_digest=digest,
            rule=rule,
            where=" or ".join(places),
        )
        return SignedImage(reference, manifest, digest, found, tuple(messages), rule, tuple(pairs))


def cosign_tag(digest: str) -> str:
    """Where cosign attaches an image's signatures: ``sha256-<hex>.sig``."""
    return digest.replace(":", "-") + ".sig"


def cosign_pairs(body: bytes, blob: Callable[[str, int], bytes]) -> list[SigstorePair]:
    """(payload, signature) of every layer of a ``.sig`` manifest that carries the cosign
    annotation; ``blob(digest, size)`` fetches a payload, checked against its digest."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RemoteLiedError(f"the cosign signature manifest is not JSON: {exc}") from exc
    layers = doc.get("layers") if isinstance(doc, dict) else None
    if not isinstance(layers, list):
        raise RemoteLiedError("the cosign signature manifest has no layers list")
    out: list[SigstorePair] = []
    for layer in layers[: MAX_SIGNATURES + 1]:
        notes = layer.get("annotations") if isinstance(layer, dict) else None
        sig = notes.get(ANNOTATION) if isinstance(notes, dict) else None
        digest, size = layer.get("digest"), layer.get("size")
        if not isinstance(sig, str) or not isinstance(digest, str) or type(size) is not int:
            continue  # not a cosign signature layer (containers/image skips them too)
        if not 0 <= size <= MAX_PAYLOAD:
            raise RemoteLiedError(f"a cosign payload declares {size} bytes (at most {MAX_PAYLOAD})")
        out.append((blob(digest, size), sig))
    return out

"""Which signed names an image may carry: containers/image's ``signedIdentity`` rules
(containers-policy.json(5)), applied to normalized references.

- ``matchRepoDigestOrExact`` (the default): an image asked for by digest needs a signature
  naming the same repository; one asked for by tag needs the same repository *and* tag.
- ``matchRepository``: the same repository, any tag.
- ``exactReference``: the signature names exactly ``docker_reference``, whatever was asked.
- ``exactRepository``: the signature names the repository ``docker_repository``.
- ``remapIdentity``: when the image's name is within ``prefix`` (whole segments), that part
  is replaced by ``signed_prefix`` first, then matchRepoDigestOrExact applies (a mirror
  verifies against the canonical name).
"""

from __future__ import annotations

from typing import Literal

from trustd.shared._dataclass import frozen
from trustd.shared.errors import RemoteLiedError
from trustd.shared.ocisig.name import DockerName, DockerReference

IdentityType = Literal[
    "matchRepoDigestOrExact", "matchRepository", "exactReference", "exactRepository",
    "remapIdentity",
]  # fmt: skip
IDENTITY_TYPES: tuple[IdentityType, ...] = (
    "matchRepoDigestOrExact", "matchRepository", "exactReference", "exactRepository",
    "remapIdentity",
)  # fmt: skip


class IdentityMismatchError(RemoteLiedError):
    """A valid signature by a trusted key that names another image."""


@frozen
class SignedIdentity:
    type: IdentityType = "matchRepoDigestOrExact"
    docker_reference: str = ""  # exactReference
    docker_repository: str = ""  # exactRepository
    prefix: str = ""  # remapIdentity
    signed_prefix: str = ""  # remapIdentity

    def describe(self) -> str:
        extra = self.docker_reference or self.docker_repository
        if self.type == "remapIdentity":
            extra = f"{self.prefix} -> {self.signed_prefix}"
        return f"{self.type} ({extra})" if extra else self.type


def _remap(image: DockerReference, prefix: str, signed_prefix: str) -> DockerReference:
    want = DockerName.parse(prefix)
    if not image.name.is_within(want):
        return image
    rest = image.name.segments[len(want.segments) :]
    target = DockerName.parse(signed_prefix)
    path = "/".join((*target.segments[1:], *rest))
    return DockerReference(DockerName(target.registry, path), image.tag, image.digest)


def mismatch(rule: SignedIdentity, image: DockerReference, signed: DockerReference) -> str | None:
    """Why ``signed`` (the signature's name) does not match ``image`` under ``rule``, or None."""
    if rule.type == "remapIdentity":
        image = _remap(image, rule.prefix, rule.signed_prefix)
    if rule.type == "exactReference":
        want = DockerReference.parse(rule.docker_reference)
        ok = (want.name, want.tag, want.digest) == (signed.name, signed.tag, signed.digest)
        return None if ok else f"the policy requires exactly {want}"
    if rule.type == "exactRepository":
        repo = DockerName.parse(rule.docker_repository)
        return None if signed.name == repo else f"the policy requires repository {repo.text}"
    if signed.name != image.name:
        return f"it is signed for {signed}, not for repository {image.name.text}"
    if rule.type == "matchRepository" or image.tag is None:
        return None
    if signed.tag != image.tag or signed.digest is not None:
        return f"it is signed for {signed}, not for tag {image.tag!r}"
    return None


def check_identity(rule: SignedIdentity, image: DockerReference, signed: DockerReference) -> None:
    """Raise IdentityMismatchError naming both names and the fix."""
    why = mismatch(rule, image, signed)
    if why is not None:
        raise IdentityMismatchError(
            f"the signature for {image} names another image: {why} "
            f"(identity rule {rule.describe()})",
            hint="fetch the image by the name it was signed for, or set require.signed_identity "
            'in the policy (e.g. {type = "matchRepository"}, or "remapIdentity" for a mirror)',
        )

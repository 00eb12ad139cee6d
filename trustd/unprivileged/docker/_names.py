"""How a registry image is named to the policy and the store: its Docker name as typed, the
AC name the conversion gives it, and the tag as its ``version`` label (docs/adr/0021)."""

from __future__ import annotations

from trustd.shared.docker.convert import sanitize_identifier
from trustd.shared.ocisig.name import DockerName, DockerReference, split_host
from trustd.shared.policy import ImageRef
from trustd.unprivileged.docker.reference import DockerRef


def policy_ref(ref: DockerRef) -> ImageRef:
    """The name and version policy scopes judge a registry image by: its Docker name as typed
    (``docker://`` scopes), the AC name it gets in the store (scopes written before those),
    and the tag, which becomes its ``version`` label (docs/adr/0021, addendum)."""
    return ImageRef(
        ImageRef.of(registry_image_name(ref), ref.tag).name,
        ref.tag or None,
        docker_reference(ref).name,
    )


def scope_fix(ref: DockerRef) -> str:
    return (
        f'in policy.toml, give "{docker_reference(ref).name}" a scope whose '
        'run.insecure_options lists "image" (or whose require.type is "accept-anything")'
    )


def registry_image_name(ref: DockerRef) -> str:
    """The AC name a registry image gets in the store (what policy scopes match)."""
    return sanitize_identifier(f"{ref.registry}/{ref.repository}")


def docker_reference(ref: DockerRef) -> DockerReference:
    return DockerReference(
        DockerName(*split_host(f"{ref.registry}/{ref.repository}")), ref.tag, ref.digest
    )

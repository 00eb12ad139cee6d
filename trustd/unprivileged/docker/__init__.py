"""Docker-format images (``docker://``, ``docker-archive:``, ``oci:``) converted into ACIs.

A Docker image carries no appc signature. It is verified by its containers/image simple
signatures or cosign attachments when a key is trusted for its Docker name (``signatures``;
an ``oci:`` layout as the reference the policy's ``[layouts]`` states, ``_signed_layout``),
else it enters the store only through the explicit, recorded ``--insecure-options=image``
opt-out *and* a policy scope that allows it (:func:`.fetch.gate`); the squashed ACI then
passes the same admission gate as every other image.
"""

from trustd.shared.docker.convert import convert
from trustd.unprivileged.docker._local import LocalSource, open_local_source
from trustd.unprivileged.docker._names import policy_ref
from trustd.unprivileged.docker.fetch import (
    UNSIGNED_MESSAGE,
    DockerFetch,
    fetch_docker,
    gate,
)
from trustd.unprivileged.docker.reference import DockerRef, parse_docker_ref
from trustd.unprivileged.docker.registry import Registry, RegistryLimits

__all__ = [
    "UNSIGNED_MESSAGE",
    "DockerFetch",
    "DockerRef",
    "LocalSource",
    "Registry",
    "RegistryLimits",
    "convert",
    "fetch_docker",
    "gate",
    "open_local_source",
    "parse_docker_ref",
    "policy_ref",
]

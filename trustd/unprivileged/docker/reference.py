"""What the user asked for: ``docker://`` references, ``docker-archive:`` and ``oci:`` paths.

``docker://[HOST[:PORT]/]NAME[:TAG|@sha256:DIGEST]`` (also ``docker:``) follows the Docker
reference grammar (distribution/reference): the first component is a registry when it has a
``.`` or a ``:`` or is ``localhost``; otherwise the image is on Docker Hub
(``registry-1.docker.io``), where a one-component name gets ``library/``. The tag defaults to
``latest`` unless a digest pins the image. Bad syntax gets rkt's message.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from trustd.shared._dataclass import frozen
from trustd.shared.docker.documents import DIGEST
from trustd.shared.errors import UserError

DOCKER_HUB = "registry-1.docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", DOCKER_HUB})
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$"
)
MAX_NAME = 255

Kind = Literal["registry", "archive", "oci"]


@frozen
class DockerRef:
    """A parsed Docker-format image source; ``text`` is what the user typed."""

    kind: Kind
    text: str
    registry: str = ""  # host[:port], registries only
    repository: str = ""  # e.g. library/busybox
    tag: str | None = None
    digest: str | None = None  # sha256:<hex> when pinned
    path: Path | None = None  # archives and OCI layouts

    @property
    def pinned(self) -> bool:
        return self.digest is not None

    @property
    def reference(self) -> str:
        """What the registry's manifest endpoint is asked for: the digest, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def url(self) -> str:
        """The canonical source URL recorded in the store (digest-pinned ones keep the pin)."""
        if self.kind == "archive":
            return f"docker-archive:{self.path}"
        if self.kind == "oci":
            return f"oci:{self.path}:{self.tag or 'latest'}"
        at = f"@{self.digest}" if self.digest else f":{self.tag}"
        return f"docker://{self.registry}/{self.repository}{at}"


def _bad(text: str) -> UserError:
    return UserError(
        f'invalid docker URL "{text}"; expected syntax is '
        '"docker://[REGISTRY_HOST[:REGISTRY_PORT]/]IMAGE_NAME[:TAG]"',
        hint="e.g. docker://busybox, docker://quay.io/coreos/etcd:v3.5.0, "
        "docker://127.0.0.1:5000/app@sha256:<64 hex digits>",
    )


def _split_registry(rest: str) -> tuple[str, str]:
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        host = DOCKER_HUB if first.lower() in _HUB_ALIASES else first
        return host, remainder
    return DOCKER_HUB, rest


def parse_registry_ref(text: str) -> DockerRef:
    """Parse ``docker://…`` or ``docker:…``; raises UserError with rkt's text on bad syntax."""
    if text.startswith("docker://"):
        rest = text[len("docker://") :]
    elif text.startswith("docker:"):
        rest = text[len("docker:") :]
    else:
        raise _bad(text)
    rest, at, digest = rest.partition("@")
    if at and not DIGEST.match(digest):
        raise _bad(text)
    registry, name = _split_registry(rest)
    tag: str | None = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, _, tag = name.rpartition(":")
        if not _TAG.match(tag):
            raise _bad(text)
    if registry == DOCKER_HUB and name and "/" not in name:
        name = f"library/{name}"
    if not _HOST.match(registry) or not name or len(name) > MAX_NAME:
        raise _bad(text)
    if not all(_COMPONENT.match(part) for part in name.split("/")):
        raise _bad(text)
    if tag is None and not at:
        tag = "latest"
    return DockerRef("registry", text, registry, name, tag, digest or None)


def parse_local_ref(text: str) -> DockerRef:
    """``docker-archive:PATH`` (a ``docker save`` tarball) or ``oci:PATH[:TAG]``."""
    if text.startswith("docker-archive:"):
        path = text[len("docker-archive:") :]
        if not path:
            raise UserError(f"{text!r}: docker-archive: needs a path", hint="docker-archive:FILE")
        return DockerRef("archive", text, path=Path(path))
    if text.startswith("oci:"):
        spec = text[len("oci:") :]
        path, tag = spec, None
        head, colon, tail = spec.rpartition(":")
        if colon and "/" not in tail and not Path(spec).exists():
            path, tag = head, tail
            if not _TAG.match(tag):
                raise UserError(f"{text!r}: {tag!r} is not a valid tag", hint="oci:DIR[:TAG]")
        if not path:
            raise UserError(f"{text!r}: oci: needs a directory", hint="oci:DIR[:TAG]")
        return DockerRef("oci", text, path=Path(path), tag=tag)
    raise UserError(f"{text!r} is not a docker-archive: or oci: reference")


def parse_docker_ref(text: str) -> DockerRef:
    """Any Docker-format source trustd fetches: a registry, an archive, an OCI layout."""
    if text.startswith(("docker-archive:", "oci:")):
        return parse_local_ref(text)
    return parse_registry_ref(text)

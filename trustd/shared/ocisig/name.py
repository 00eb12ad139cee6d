"""Docker names as signatures and trust prefixes spell them (containers/image's reference
package on distribution's grammar): ``host[:port]/path`` with Docker Hub normalized to
``docker.io`` (and ``library/`` for one-component Hub names).

A name is also a trust scope: ``docker://127.0.0.1:5000/ns`` is trusted for every image
whose segments start with ``127.0.0.1:5000``, ``ns`` (whole segments, docs/adr/0002). The
port stays as typed: nothing here turns ``:`` into ``-`` the way converted AC names do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trustd.shared._dataclass import frozen
from trustd.shared.errors import UserError, excerpt

SCHEME = "docker://"
HUB = "docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", re.ASCII)
_HOST = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*"
    r"|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?",
    re.ASCII,
)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", re.ASCII)
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}", re.ASCII)
MAX_NAME = 255


class InvalidDockerNameError(UserError):
    """Text that is not a Docker name, reference or trust prefix."""


def _bad(text: str, why: str) -> InvalidDockerNameError:
    return InvalidDockerNameError(
        f"{excerpt(text)} is not a Docker name: {why}",
        hint='write it as docker://REGISTRY[:PORT]/NAMESPACE[/REPO], e.g. "docker://quay.io/ns"',
    )


def split_host(text: str) -> tuple[str, str]:
    """(registry, path) the Docker way: the first component is a registry when it has a
    ``.`` or a ``:`` or is ``localhost``; otherwise the name is on Docker Hub."""
    first, sep, rest = text.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        host = first.lower()
        return (HUB if host in _HUB_ALIASES else host), rest
    return HUB, text


@dataclass(frozen=True, slots=True, order=True)
class DockerName:
    """A registry and a (possibly empty) repository path; a trust scope or an image's name."""

    registry: str
    path: str = ""

    def __post_init__(self) -> None:
        if not _HOST.fullmatch(self.registry):
            raise _bad(self.registry, "the registry is not a host[:port]")
        if self.path and not all(_COMPONENT.fullmatch(p) for p in self.path.split("/")):
            raise _bad(self.path, "a path component is not lowercase [a-z0-9] with . _ - inside")
        if len(self.path) > MAX_NAME:
            raise _bad(self.path, f"the path is longer than {MAX_NAME} characters")

    @classmethod
    def parse(cls, text: str) -> DockerName:
        """``[docker://]host[:port][/path]`` or a Hub short name; no tag or digest."""
        body = text.removeprefix(SCHEME)
        if not body or "@" in body or body.endswith("/"):
            raise _bad(text, "expected REGISTRY[/PATH] without a tag, digest or trailing /")
        if "/" not in body and ("." in body or ":" in body or body == "localhost"):
            return cls(body.lower())
        registry, path = split_host(body)
        if registry == HUB and path and "/" not in path:
            path = f"library/{path}"
        if ":" in path.rsplit("/", 1)[-1]:
            raise _bad(text, "a trust prefix names no tag")
        return cls(registry, path)

    @property
    def segments(self) -> tuple[str, ...]:
        return (self.registry, *self.path.split("/")) if self.path else (self.registry,)

    def is_within(self, prefix: DockerName) -> bool:
        theirs = prefix.segments
        return self.segments[: len(theirs)] == theirs

    def ancestors(self) -> tuple[DockerName, ...]:
        """This name and every ancestor, longest first."""
        parts = self.path.split("/") if self.path else []
        return tuple(
            DockerName(self.registry, "/".join(parts[:n])) for n in range(len(parts), -1, -1)
        )

    @property
    def text(self) -> str:
        """``host/path`` (what a signature's docker-reference starts with)."""
        return "/".join(self.segments)

    def __str__(self) -> str:
        return SCHEME + self.text


@frozen
class DockerReference:
    """A repository with a tag and/or a digest, normalized (``docker.io/library/app:1``)."""

    name: DockerName
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> DockerReference:
        """A signature's ``docker-reference`` (or a policy's): containers/image's
        ``reference.ParseNormalizedNamed``; a bare name gets no implicit tag here."""
        body = text.removeprefix(SCHEME)
        body, at, digest = body.partition("@")
        if at and not _DIGEST.fullmatch(digest):
            raise _bad(text, f"{excerpt(digest)} is not a sha256/sha512 digest")
        tag: str | None = None
        last = body.rsplit("/", 1)[-1]
        if (":" in last and "/" in body) or (
            ":" in last and not ("." in last.partition(":")[0] or last.startswith("localhost"))
        ):
            body, _, tag = body.rpartition(":")
        if tag is not None and not _TAG.fullmatch(tag):
            raise _bad(text, f"{excerpt(tag)} is not a tag")
        registry, path = split_host(body)
        if not path:
            raise _bad(text, "it names no repository")
        if registry == HUB and "/" not in path:
            path = f"library/{path}"
        return cls(DockerName(registry, path), tag, digest or None)

    @property
    def repository(self) -> str:
        return self.name.text

    def __str__(self) -> str:
        out = self.name.text
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

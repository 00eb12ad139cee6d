"""Scope keys and the resolver: containers/image's most-specific-wins, on whole segments.

Candidates for an image ``host/a/b`` with version ``v``, most specific first (docs/adr/0008):

1. ``host/a/b:v``  (exact name and version label),
2. ``host/a/b``, ``host/a``, ``host``  (the name and every ancestor, whole path segments),
3. ``*.<host minus its first label>``, then minus the next, ...  (never ``host`` itself),
4. ``default``.

A Docker image also carries its Docker name as typed (``docker://127.0.0.1:5000/ns/app``,
Docker Hub as ``docker://docker.io/library/...``). Its ``docker://`` candidates come at each
depth just before the converted AC name's candidate of the same depth (``127.0.0.1-5000/ns/app``,
the spelling of scopes written before docker:// keys; it still matches, lint finding
TD-POL-024 asks for the docker:// spelling), so a more specific scope wins whichever way
it is spelled (docs/adr/0021, addendum).

A ``docker://`` scope also covers every image whose AC name is its conversion, whatever
Docker name the image claims or lacks: the AC name is all an image's bytes promise, so an
ACI named ``127.0.0.1-5000/ns/app`` (or one whose annotations name another repository) is
judged by ``docker://127.0.0.1:5000/ns/app`` like the image that name was converted from;
such a configured key comes just after the AC candidate it converts to, so an AC-name scope
of the same depth (an ACI's own, e.g. ``quay.io/coreos`` beside ``docker://quay.io/coreos``)
still decides for it, and a docker:// scope more specific than any AC-name scope wins.

The first candidate that is a configured scope applies alone; every later candidate that is
also configured is *shadowed* for this image (reported by ``explain`` and in each decision).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from functools import lru_cache
from typing import Literal

from trustd.shared._dataclass import frozen
from trustd.shared.appc.identifier import ACIdentifier
from trustd.shared.errors import TrustdError, UserError
from trustd.shared.ocisig.name import HUB, SCHEME, DockerName, split_host
from trustd.shared.policy.model import Policy

DEFAULT = "default"
ScopeKind = Literal["exact", "prefix", "wildcard"]
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,127}")
_DOCKER_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# the first segment of a converted docker name whose registry had a port: 127.0.0.1-5000
_MANGLED_HOST = re.compile(r"(?P<host>(?:[a-z0-9-]+\.)+[a-z0-9-]+|localhost)-(?P<port>[0-9]{1,5})")


@frozen
class ImageRef:
    """An image name with an optional version label (``example.com/app:1.0``)."""

    name: ACIdentifier
    version: str | None = None
    # a docker image: its Docker name as typed (from the fetch request, or at run from what
    # root verified); docker:// scopes match it
    docker: DockerName | None = None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        name, sep, version = text.partition(":")
        if sep and not _VERSION.fullmatch(version):
            raise UserError(
                f"{text!r} is not an image name: bad version {version!r}",
                hint="write NAME or NAME:VERSION, e.g. example.com/app:1.0",
            )
        return cls(ACIdentifier.parse(name), version if sep else None)

    @classmethod
    def of(cls, name: ACIdentifier | str, version: str | None) -> ImageRef:
        """An image as a verified manifest names it: its AC name and ``version`` label.

        The label is taken as it is: one outside the version grammar matches no exact scope
        (scope keys are checked against that grammar at load), so it falls to the name's."""
        ident = name if isinstance(name, ACIdentifier) else ACIdentifier.parse(name)
        return cls(ident, version or None)

    def __str__(self) -> str:
        return f"{self.name}:{self.version}" if self.version else str(self.name)

    @property
    def docker_name(self) -> DockerName | None:
        """The Docker name docker:// scopes match, when it is the one this image's AC name was
        converted from; a Docker name that disagrees with the AC name (a crafted ACI's
        annotations) is ignored, so it can never pull an image into another name's scope."""
        if self.docker is None or _ac_name(self.docker) != str(self.name):
            return None
        return self.docker

    @property
    def typed(self) -> str:
        """As users type it: ``docker://127.0.0.1:5000/ns/app:1`` for a docker image (never
        the store's ``127.0.0.1-5000`` spelling), else ``name[:version]``."""
        docker = self.docker_name
        return str(self) if docker is None else docker_key(docker, self.version)

    @property
    def scope_key(self) -> str:
        """The most specific prefix scope key for this image, spelled as users type it."""
        docker = self.docker_name
        return str(docker) if docker is not None else str(self.name)


def parse_docker_key(key: str) -> tuple[DockerName, str | None]:
    """A ``docker://REGISTRY[:PORT][/PATH][:TAG]`` scope key as (name, tag), or raise.

    The key must be written canonically (Docker Hub as ``docker.io/library/...``), so the
    key a user reads is the one that matches."""
    body = key.removeprefix(SCHEME)
    tag: str | None = None
    if "/" in body:
        head, _, last = body.rpartition("/")
        if ":" in last:
            last, _, tag = last.partition(":")
            if not _DOCKER_TAG.fullmatch(tag):
                raise UserError(
                    f"{key!r}: {tag!r} is not a tag", hint="write docker://REGISTRY/REPO:TAG"
                )
        body = f"{head}/{last}"
    first, _, rest = body.partition("/")
    if not body:
        raise UserError(f"{key!r} names no registry", hint="write docker://REGISTRY[:PORT]/NS")
    if not ("." in first or ":" in first or first == "localhost"):
        hub = f"library/{body}" if "/" not in body else body
        raise UserError(
            f"{key!r} names no registry",
            hint=f"write it as {SCHEME}{HUB}/{hub}{':' + tag if tag else ''} (Docker Hub)",
        )
    if body.endswith("/") or "@" in body:
        raise UserError(
            f"{key!r} is not a scope: expected REGISTRY[/PATH] without a trailing / or digest",
            hint="write docker://REGISTRY[:PORT]/NAMESPACE[/REPO][:TAG]",
        )
    host = split_host(f"{first}/x")[0]
    name = DockerName(host, rest)  # whole components, checked; no library/ added for a prefix
    if SCHEME + body != str(name):
        raise UserError(
            f"{key!r} is not written canonically",
            hint=f"write it as {name}{':' + tag if tag else ''}",
        )
    return name, tag


def docker_key(name: DockerName, tag: str | None = None) -> str:
    return f"{name}:{tag}" if tag else str(name)


def mangled_spelling(key: str) -> str | None:
    """The ``docker://`` key a scope written as a converted docker name means, or None.

    ``127.0.0.1-5000/ns`` is how a ``127.0.0.1:5000`` registry's images are named in the
    store; such a scope still matches them (compatibility), and lint asks for the new form."""
    if key.startswith((SCHEME, "*.")):
        return None
    name, _, version = key.partition(":")
    first, _, rest = name.partition("/")
    m = _MANGLED_HOST.fullmatch(first)
    if m is None:
        return None
    try:
        dname = DockerName(f"{m['host']}:{m['port']}", rest)
    except TrustdError:
        return None
    return docker_key(dname, version or None)


def scope_problem(key: str) -> str | None:  # noqa: PLR0911 - one return per kind of key
    """Why ``key`` can never match an image name, or None (these keys are refused at load)."""
    if key == DEFAULT:
        return '"default" is the top-level [default] table, not a scope'
    if key.startswith(SCHEME):
        try:
            parse_docker_key(key)
        except TrustdError as exc:
            return f"{exc.message} ({exc.hint})" if exc.hint else exc.message
        return None
    if key.startswith("*."):
        domain = key[2:]
        if "/" in domain or ":" in domain:
            return "a wildcard scope is a host suffix only (*.example.com)"
        return _identifier_problem(domain)
    if "*" in key:
        return "globs are not supported; use a prefix (example.com/app) or *.domain"
    name, sep, version = key.partition(":")
    if sep and not _VERSION.fullmatch(version):
        return f"{version!r} is not a version label"
    return _identifier_problem(name)


def _identifier_problem(value: str) -> str | None:
    try:
        ACIdentifier.parse(value)
    except TrustdError as exc:
        return f"no image name can match it: {exc.message}"
    return None


def scope_kind(key: str) -> ScopeKind:
    if key.startswith("*."):
        return "wildcard"
    if key.startswith(SCHEME):
        return "exact" if parse_docker_key(key)[1] else "prefix"
    return "exact" if ":" in key else "prefix"


def candidates(ref: ImageRef, docker_keys: Collection[str] = ()) -> tuple[str, ...]:
    """Scope keys that could apply to ``ref``, most specific first, ``default`` last.

    ``docker_keys``: the policy's ``docker://`` keys; each one whose conversion is one of
    ``ref``'s AC candidates is a candidate just after it (module docstring)."""
    out = _candidates(ref)
    if not docker_keys:
        return out
    by_ac = by_conversion(tuple(sorted(k for k in docker_keys if k.startswith(SCHEME))))
    merged: list[str] = []
    for cand in out:
        merged.append(cand)
        merged.extend(k for k in by_ac.get(cand, ()) if k not in out and k not in merged)
    return tuple(merged)


@lru_cache(maxsize=64)
def by_conversion(docker_keys: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Each AC spelling (``name`` or ``name:tag``) the given ``docker://`` keys convert to."""
    out: dict[str, list[str]] = {}
    for key in docker_keys:
        try:
            name, tag = parse_docker_key(key)
        except TrustdError:
            continue  # refused at load; never a candidate
        ac = _ac_name(name)
        out.setdefault(f"{ac}:{tag}" if tag else ac, []).append(key)
    return {k: tuple(v) for k, v in out.items()}


def _candidates(ref: ImageRef) -> tuple[str, ...]:
    out: list[str] = []
    ac = [str(a) for a in ref.name.ancestors()]
    dname = ref.docker_name
    docker = [str(a) for a in dname.ancestors()] if dname is not None else []
    if ref.version:
        if dname is not None and _DOCKER_TAG.fullmatch(ref.version):
            out.append(f"{dname}:{ref.version}")
        out.append(f"{ref.name}:{ref.version}")
    if len(docker) == len(ac):  # depth by depth: the docker:// spelling, then the AC one
        for d, a in zip(docker, ac, strict=True):
            out.extend((d, a))
    else:
        out.extend(docker + ac)
    labels = ref.name.segments[0].split(".")
    out.extend("*." + ".".join(labels[i:]) for i in range(1, len(labels)))
    out.append(DEFAULT)
    return tuple(out)


@frozen
class Resolution:
    scope: str  # the scope key that applies ("default" when none matched)
    shadowed: tuple[str, ...]  # configured scopes that also match, broadest last


def resolve(policy: Policy, ref: ImageRef) -> Resolution:
    hits = [c for c in candidates(ref, policy.scopes) if c == DEFAULT or c in policy.scopes]
    return Resolution(hits[0], tuple(hits[1:]))


def parent_of(policy: Policy, key: str) -> str:
    """The scope ``key`` shadows for its own name: the next configured broader scope."""
    if scope_kind(key) == "wildcard":
        labels = key[2:].split(".")
        broader = ["*." + ".".join(labels[i:]) for i in range(1, len(labels))]
    elif key.startswith(SCHEME):
        cands = candidates(docker_ref(*parse_docker_key(key)))
        broader = list(cands[cands.index(key) + 1 :])
    else:
        name, _, version = key.partition(":")
        cands = candidates(ImageRef(ACIdentifier(name), version or None))
        broader = list(cands[cands.index(key) + 1 :])
    return next((c for c in broader if c in policy.scopes), DEFAULT)


def docker_ref(name: DockerName, tag: str | None) -> ImageRef:
    """The policy's view of a Docker image: its AC name in the store (``127.0.0.1-5000/ns``,
    appc's SanitizeACIdentifier of the Docker name) and its Docker name as typed."""
    return ImageRef(ACIdentifier.parse(_ac_name(name)), tag, name)


def _ac_name(name: DockerName) -> str:
    """The AC name the conversion gives a Docker name (appc's SanitizeACIdentifier of
    ``registry/repository``, Docker Hub under the registry's own host)."""
    segments = name.segments
    if name.registry == HUB:
        segments = ("registry-1.docker.io", *segments[1:])
    return re.sub(r"[^a-z0-9\-._~/]+", "-", "/".join(segments).lower()).strip("-._~/")

"""Scope keys and the resolver: containers/image's most-specific-wins, on whole segments.

Candidates for an image ``host/a/b`` with version ``v``, most specific first (docs/adr/0008):

1. ``host/a/b:v``  (exact name and version label),
2. ``host/a/b``, ``host/a``, ``host``  (the name and every ancestor, whole path segments),
3. ``*.<host minus its first label>``, then minus the next, ...  (never ``host`` itself),
4. ``default``.

The first candidate that is a configured scope applies alone; every later candidate that is
also configured is *shadowed* for this image (reported by ``explain`` and in each decision).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from trustd.shared.appc.identifier import ACIdentifier
from trustd.shared.errors import TrustdError, UserError
from trustd.shared.policy.model import Policy

DEFAULT = "default"
ScopeKind = Literal["exact", "prefix", "wildcard"]
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,127}")


@dataclass(frozen=True, slots=True)
class ImageRef:
    """An image name with an optional version label (``example.com/app:1.0``)."""

    name: ACIdentifier
    version: str | None = None

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


def scope_problem(key: str) -> str | None:
    """Why ``key`` can never match an image name, or None (these keys are refused at load)."""
    if key == DEFAULT:
        return '"default" is the top-level [default] table, not a scope'
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
    return "exact" if ":" in key else "prefix"


def candidates(ref: ImageRef) -> tuple[str, ...]:
    """Scope keys that could apply to ``ref``, most specific first, ``default`` last."""
    out: list[str] = []
    if ref.version:
        out.append(f"{ref.name}:{ref.version}")
    out.extend(str(a) for a in ref.name.ancestors())
    labels = ref.name.segments[0].split(".")
    out.extend("*." + ".".join(labels[i:]) for i in range(1, len(labels)))
    out.append(DEFAULT)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Resolution:
    scope: str  # the scope key that applies ("default" when none matched)
    shadowed: tuple[str, ...]  # configured scopes that also match, broadest last


def resolve(policy: Policy, ref: ImageRef) -> Resolution:
    hits = [c for c in candidates(ref) if c == DEFAULT or c in policy.scopes]
    return Resolution(hits[0], tuple(hits[1:]))


def parent_of(policy: Policy, key: str) -> str:
    """The scope ``key`` shadows for its own name: the next configured broader scope."""
    if scope_kind(key) == "wildcard":
        labels = key[2:].split(".")
        broader = ["*." + ".".join(labels[i:]) for i in range(1, len(labels))]
    else:
        name, _, version = key.partition(":")
        cands = candidates(ImageRef(ACIdentifier(name), version or None))
        broader = list(cands[cands.index(key) + 1 :])
    return next((c for c in broader if c in policy.scopes), DEFAULT)

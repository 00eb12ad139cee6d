"""AC Identifier and AC Name (appc spec 0.8.11, schema/types/acidentifier.go, acname.go).

appc defines an AC Identifier by its alphabet (``[a-z0-9-._~/]``) and by its edges (no
separator first or last). That alone admits ``a//b`` and ``a/../b``; because trustd uses
identifiers as relative paths (``prefix.d/<prefix>/``) and matches them on whole path
segments, we also refuse empty, ``.`` and ``..`` segments. No valid image name of any
registry we know has one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trustd.shared.errors import UserError, excerpt

_IDENT_CHARS = re.compile(r"[^a-z0-9\-._~/]")
_IDENT_EDGES = re.compile(r"(^[\-._~/])|([\-._~/]$)")
_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
MAX_IDENTIFIER_LEN = 512


class InvalidIdentifierError(UserError):
    """A string that is not a valid AC Identifier or AC Name."""


def _identifier_problem(value: str) -> str | None:
    problem: str | None = None
    if not value:
        problem = "it is empty"
    elif len(value) > MAX_IDENTIFIER_LEN:
        problem = f"it is {len(value)} characters long (at most {MAX_IDENTIFIER_LEN})"
    elif "://" in value:
        problem = "it contains a URL scheme"
    elif m := _IDENT_CHARS.search(value):
        problem = f"it contains {m.group(0)!r} (allowed: a-z 0-9 - . _ ~ /)"
    elif _IDENT_EDGES.search(value):
        problem = "it starts or ends with one of - . _ ~ /"
    elif any(seg in ("", ".", "..") for seg in value.split("/")):
        problem = "it has an empty, '.' or '..' path segment"
    return problem


@dataclass(frozen=True, slots=True, order=True)
class ACIdentifier:
    """A validated AC Identifier, e.g. ``example.com/app``. Construct with :meth:`parse`."""

    value: str

    def __post_init__(self) -> None:
        problem = _identifier_problem(self.value)
        if problem is not None:
            raise InvalidIdentifierError(
                f"{excerpt(self.value)} is not a valid AC Identifier: {problem}",
                hint='use a lowercase name like "example.com/app" (appc spec, AC Identifier)',
            )

    @classmethod
    def parse(cls, value: str) -> ACIdentifier:
        return cls(value)

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.value.split("/"))

    def is_within(self, prefix: ACIdentifier) -> bool:
        """True when ``prefix`` equals this name or is an ancestor of it on whole segments.

        ``example.com/foo`` is within ``example.com`` and ``example.com/foo``, never within
        ``example.com/fo`` (rkt's string-prefix test said yes; see docs/adr/0002).
        """
        mine, theirs = self.segments, prefix.segments
        return mine[: len(theirs)] == theirs

    def ancestors(self) -> tuple[ACIdentifier, ...]:
        """This name and every ancestor, longest first: ``a/b/c``, ``a/b``, ``a``."""
        segs = self.segments
        return tuple(ACIdentifier("/".join(segs[:n])) for n in range(len(segs), 0, -1))

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True, order=True)
class ACName:
    """A validated AC Name (``[a-z0-9]+(-[a-z0-9]+)*``), used for app and volume names."""

    value: str

    def __post_init__(self) -> None:
        if not _NAME.match(self.value):
            raise InvalidIdentifierError(
                f"{excerpt(self.value)} is not a valid AC Name",
                hint='use lowercase letters, digits and single dashes, e.g. "web-1"',
            )

    def __str__(self) -> str:
        return self.value

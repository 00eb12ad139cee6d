"""Value rules of the appc 0.8.11 image manifest (private; raise :class:`FieldError`).

Each rule restates appc's schema/types checks (labels.go, semver.go, hash.go, environment,
port.go, annotations.go) in our words; the table of valid os/arch pairs is the one rkt
vendored (reference rkt.md section 5.4), which is wider than appc HEAD's on linux.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Final

from trustd.shared.appc._json import FieldError
from trustd.shared.appc.identifier import ACIdentifier, ACName, InvalidIdentifierError

VALID_OS_ARCH: Final[dict[str, tuple[str, ...]]] = {
    "linux": (
        "amd64",
        "i386",
        "aarch64",
        "aarch64_be",
        "armv6l",
        "armv7l",
        "armv7b",
        "ppc64",
        "ppc64le",
        "s390x",
    ),
    "freebsd": ("amd64", "i386", "arm"),
    "darwin": ("x86_64", "i386"),
}


def go_quote(text: str) -> str:
    """Go's ``%#v`` of a string (``strconv.Quote``), as appc's and rkt's messages print it."""
    return json.dumps(text, ensure_ascii=True)


def os_arch_error(
    os_name: str, arch: str | None, valid: dict[str, tuple[str, ...]] = VALID_OS_ARCH
) -> str | None:
    """appc's ``IsValidOSArch`` message (``bad os "freebsd" (must be one of: [linux])``,
    ``bad arch "x" for linux (must be one of: [amd64 ...])``), or None when valid."""
    archs = valid.get(os_name)
    if archs is None:
        return f"bad os {go_quote(os_name)} (must be one of: [{' '.join(sorted(valid))}])"
    if arch is not None and arch not in archs:
        return f"bad arch {go_quote(arch)} for {os_name} (must be one of: [{' '.join(archs)}])"
    return None


# semver.org 2.0.0, the grammar coreos/go-semver implements for appc's acVersion.
_NUM = r"0|[1-9]\d*"
_PRE = r"(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)"
_SEMVER = re.compile(
    rf"^(?:{_NUM})\.(?:{_NUM})\.(?:{_NUM})"
    rf"(?:-{_PRE}(?:\.{_PRE})*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$",
    re.ASCII,
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$", re.ASCII)
EVENT_HANDLER_NAMES: Final = ("pre-start", "post-stop")


def identifier(value: str, path: str) -> ACIdentifier:
    try:
        return ACIdentifier.parse(value)
    except InvalidIdentifierError as exc:
        raise FieldError(path, exc.message) from exc


def acname(value: str, path: str) -> ACName:
    try:
        return ACName(value)
    except InvalidIdentifierError as exc:
        raise FieldError(path, exc.message) from exc


def semver(value: str, path: str) -> str:
    if not _SEMVER.match(value):
        raise FieldError(path, f"{value!r} is not a semantic version like 0.8.11")
    if re.match(r"0\.0\.0(?:[-+]|$)", value):
        raise FieldError(path, "the version must not be 0.0.0")
    return value


def absolute(value: str, path: str) -> str:
    if not value.startswith("/"):
        raise FieldError(path, f"{value!r} must be an absolute path")
    return value


def env_name(value: str, path: str) -> str:
    if not _ENV_NAME.match(value):
        raise FieldError(
            path, f"{value!r} is not a variable name (a letter or _, then letters, digits, _ . -)"
        )
    return value


def image_hash(value: str, path: str) -> str:
    """appc's Hash: ``sha512-<value>``; appc checks only the type and a non-empty value."""
    kind, sep, digest = value.partition("-")
    if not sep or kind != "sha512" or not digest or "-" in digest:
        raise FieldError(path, f"{value!r} is not an image ID like sha512-<hex>")
    return value


def unique(names: list[tuple[str, str]], what: str) -> None:
    """Refuse the second occurrence of a name; ``names`` holds (path, name) pairs."""
    seen: set[str] = set()
    for path, name in names:
        if name in seen:
            raise FieldError(path, f"duplicate {what} {name!r}")
        seen.add(name)


def labels(pairs: list[tuple[str, str, str]], list_path: str) -> None:
    """Check (path, name, value) label triples: no "name", no duplicates, known os/arch."""
    for path, name, _ in pairs:
        if name == "name":
            raise FieldError(path, 'the label name "name" is reserved (use the manifest name)')
    unique([(path, name) for path, name, _ in pairs], "label")
    values = {name: value for _, name, value in pairs}
    os_name = values.get("os")
    if os_name is None:
        return
    if (why := os_arch_error(os_name, values.get("arch"))) is not None:
        raise FieldError(list_path, why)


def annotation_value(name: str, value: str, path: str) -> None:
    """appc gives three annotations a format: created (RFC 3339), homepage and documentation."""
    if name == "created" and not _is_rfc3339(value):
        raise FieldError(path, f"{value!r} is not an RFC 3339 date")
    if name in ("homepage", "documentation") and _ABSOLUTE_URL.match(value) is None:
        raise FieldError(path, f"{value!r} is not an absolute URL")


# RFC 3986 scheme ":" "//" authority; what urlsplit() required of these annotations (a
# scheme and a network location), without loading urllib into the root program.
_ABSOLUTE_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^/?#\s]+", re.ASCII)


def _is_rfc3339(value: str) -> bool:
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", value, re.ASCII)
    if m is None:
        return False
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    try:
        datetime.fromisoformat(m.group(1) + zone)
    except ValueError:
        return False
    return True

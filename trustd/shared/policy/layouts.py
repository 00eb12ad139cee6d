"""The Docker identity a policy states for a local OCI layout (docs/adr/0028).

A layout on disk has no registry name, so nothing in it may choose which keyring and scope
judge it. The policy names it instead, in containers/image's ``exactReference`` spirit::

    [layouts]
    "oci:/srv/images/app:v1" = "docker://registry.example.com/ns/app:v1"
    "oci:/srv/images/all" = "docker://registry.example.com/ns/all"   # any tag: the same tag

A key is ``oci:`` and an absolute, normalized directory with an optional ``:TAG``; the value
is a canonical ``docker://`` reference, with a tag exactly when the key has one (a key without
a tag names every tag of the layout, each as the same tag of the repository). The exact key
wins over the directory's. The image is then verified, stored and judged as that reference:
its signatures must name it, by a key trusted for its ``docker://`` prefix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from trustd.shared.errors import TrustdError
from trustd.shared.ocisig.name import SCHEME, DockerReference

LAYOUT_SCHEME = "oci:"
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def split_layout_key(key: str) -> tuple[str, str | None]:
    """``oci:/abs/dir[:tag]`` as (dir, tag); no problem checking (see :func:`layout_problem`)."""
    body = key.removeprefix(LAYOUT_SCHEME)
    head, colon, tail = body.rpartition(":")
    if colon and "/" not in tail:
        return head, tail
    return body, None


def layout_problem(key: str, value: object) -> str | None:  # noqa: PLR0911 - one per mistake
    """Why ``key = value`` in ``[layouts]`` can never work as written, or None."""
    if not key.startswith(LAYOUT_SCHEME):
        return f"{key!r}: a layout key is oci:/ABSOLUTE/DIR[:TAG]"
    path, tag = split_layout_key(key)
    if tag is not None and not _TAG.fullmatch(tag):
        return f"{key!r}: {tag!r} is not a tag"
    if not path.startswith("/") or path == "/":
        return f"{key!r}: the directory must be an absolute path (oci:/srv/images/app:v1)"
    if ":" in path or os.path.normpath(path) != path or path.startswith("//"):
        return f"{key!r}: write the directory normalized, as {os.path.normpath(path)!r}, no ':'"
    if not isinstance(value, str) or not value.startswith(SCHEME):
        return f"{key!r}: the value is a docker://REGISTRY/NS/REPO[:TAG] reference"
    try:
        ref = DockerReference.parse(value)
    except TrustdError as exc:
        return f"{key!r}: {exc.message}"
    if ref.digest is not None:
        return f"{key!r}: {value!r} pins a digest; the signature names a tag or a repository"
    if SCHEME + str(ref) != value:
        return f"{key!r}: write the reference canonically, as {SCHEME}{ref}"
    if (tag is None) != (ref.tag is None):
        return (
            f"{key!r}: {value!r} must have a tag exactly when the key has one "
            "(a key without a tag maps each layout tag to the same tag)"
        )
    return None


def layouts_problem(value: Mapping[str, object]) -> str | None:
    """The first problem of a ``[layouts]`` table (the decoder's field check)."""
    for key, target in value.items():
        problem = layout_problem(key, target)
        if problem:
            return problem
    return None


def layout_identity(
    layouts: Mapping[str, str], directory: str, tag: str | None
) -> tuple[str, DockerReference] | None:
    """(the key that applies, the reference the policy states) for layout ``directory``
    (absolute, normalized) and ``tag`` (None: ``latest``), or None when none is stated."""
    tag = tag or "latest"
    exact = f"{LAYOUT_SCHEME}{directory}:{tag}"
    if exact in layouts:
        return exact, DockerReference.parse(layouts[exact])
    whole = f"{LAYOUT_SCHEME}{directory}"
    if whole in layouts:
        ref = DockerReference.parse(layouts[whole])
        return whole, DockerReference(ref.name, tag)
    return None

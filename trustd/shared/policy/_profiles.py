"""Seccomp profile names -> digests: rkt's built-in sets and Docker-format profile files."""

from __future__ import annotations

import functools
from pathlib import Path

from trustd.shared.policy.model import SECCOMP_DIGEST, Policy
from trustd.shared.policy.seccomp_profile import DockerProfile, SeccompProfileError, load_profile
from trustd.shared.shipped import seccomp_profiles_dir

# The shipped profiles travel inside the package (trustd/shared/data/policy/seccomp);
# installed systems may add their own via [seccomp_profiles] in their policy.
SHIPPED_DIR = seccomp_profiles_dir()


@functools.cache
def rkt_default_digest() -> str:
    # imported here: the seccomp tables cost every policy load (every fetch) ~30 ms
    from trustd.shared.isolation.seccomp import default_spec, spec_digest  # noqa: PLC0415

    return spec_digest(default_spec())


@functools.cache
def unconfined_digest() -> str:
    """The ``@appc.io/all`` opt-out: a filter that refuses nothing."""
    from trustd.shared.isolation.seccomp import SeccompSpec, spec_digest  # noqa: PLC0415

    return spec_digest(SeccompSpec("remove", frozenset()))


def profile_paths(policy: Policy) -> dict[str, Path]:
    """Docker-format profiles a policy can name: the shipped ones, then its own table."""
    paths = {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.json"))}
    base = Path(policy.source).parent if policy.source else Path()
    for name, text in policy.seccomp_profiles.items():
        path = Path(text)
        paths[name] = path if path.is_absolute() else base / path
    return paths


def load_named(policy: Policy, name: str) -> DockerProfile:
    """Load a named profile; raises SeccompProfileError (or KeyError for an unknown name)."""
    return load_profile(profile_paths(policy)[name])


def digest_for(policy: Policy, entry: str) -> tuple[str | None, str]:
    """(digest, problem) for one ``run.seccomp`` entry; "any"/"unconfined" give (None, "")."""
    if entry == "rkt-default":
        return rkt_default_digest(), ""
    if entry in ("any", "unconfined"):
        return None, ""
    if SECCOMP_DIGEST.fullmatch(entry):
        return entry, ""
    paths = profile_paths(policy)
    if entry not in paths:
        return None, f"no seccomp profile named {entry!r} (known: {', '.join(sorted(paths))})"
    try:
        return load_profile(paths[entry]).digest, ""
    except SeccompProfileError as exc:
        return None, str(exc)

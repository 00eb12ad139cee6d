"""signedIdentity rules (containers-policy.json(5)) on normalized references, and names."""

from __future__ import annotations

import pytest

from trustd.shared.errors import UserError
from trustd.shared.ocisig.identity import (
    IdentityMismatchError,
    SignedIdentity,
    check_identity,
    mismatch,
)
from trustd.shared.ocisig.name import DockerName, DockerReference

D = "sha256:" + "cd" * 32
DEFAULT = SignedIdentity()
REPO = SignedIdentity("matchRepository")
EXACT = SignedIdentity("exactReference", docker_reference="q.io/a:1")
EXACT_REPO = SignedIdentity("exactRepository", docker_repository="q.io/a")


@pytest.mark.parametrize(
    ("rule", "image", "signed", "ok"),
    [
        (DEFAULT, "q.io/ns/app:v1", "q.io/ns/app:v1", True),
        (DEFAULT, "q.io/ns/app:v1", "q.io/ns/app:v2", False),
        (DEFAULT, "q.io/ns/app:v1", "q.io/ns/other:v1", False),
        (DEFAULT, f"q.io/ns/app@{D}", "q.io/ns/app:v9", True),  # by digest: the repository
        (DEFAULT, f"q.io/ns/app@{D}", "q.io/ns/other:v9", False),
        (DEFAULT, "busybox:latest", "docker.io/library/busybox:latest", True),  # normalized
        (REPO, "q.io/ns/app:v1", "q.io/ns/app:v2", True),
        (REPO, "q.io/ns/app:v1", "q.io/ns/app2:v1", False),
        (EXACT, "q.io/b:2", "q.io/a:1", True),
        (EXACT, "q.io/a:1", "q.io/a:2", False),
        (EXACT_REPO, "m.io/x:1", "q.io/a:7", True),
        (SignedIdentity("remapIdentity", prefix="mirror.io/m", signed_prefix="q.io/ns"),
         "mirror.io/m/app:v1", "q.io/ns/app:v1", True),
        (SignedIdentity("remapIdentity", prefix="mirror.io/m", signed_prefix="q.io/ns"),
         "mirror.io/mm/app:v1", "q.io/ns/app:v1", False),  # whole segments only
        (SignedIdentity("remapIdentity", prefix="mirror.io/m", signed_prefix="q.io/ns"),
         "mirror.io/m/app:v1", "q.io/ns/app:v2", False),
    ],
)  # fmt: skip
def test_identity_rules(rule: SignedIdentity, image: str, signed: str, ok: bool) -> None:
    result = mismatch(rule, DockerReference.parse(image), DockerReference.parse(signed))
    assert (result is None) == ok, result


def test_a_mismatch_names_both_names_and_the_rule() -> None:
    with pytest.raises(IdentityMismatchError) as info:
        check_identity(
            DEFAULT, DockerReference.parse("q.io/ns/app:v1"), DockerReference.parse("q.io/x:v1")
        )
    assert "q.io/x:v1" in info.value.message and "matchRepoDigestOrExact" in info.value.message
    assert "signed_identity" in info.value.hint


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("docker://127.0.0.1:5000/ns", ("127.0.0.1:5000", "ns")),  # the port as typed
        ("docker://quay.io", ("quay.io",)),
        ("docker://busybox", ("docker.io", "library", "busybox")),
        ("docker://index.docker.io/foo/bar", ("docker.io", "foo", "bar")),
        ("docker://[::1]:5000/a", ("[::1]:5000", "a")),
    ],
)
def test_trust_prefixes_keep_registry_names_as_typed(text: str, segments: tuple[str, ...]) -> None:
    name = DockerName.parse(text)
    assert name.segments == segments
    assert str(name) == "docker://" + "/".join(segments)


@pytest.mark.parametrize(
    "text",
    [
        "docker://",
        "docker://q.io/ns/",
        "docker://q.io/a:tag",
        "docker://q.io/A",
        "docker://q.io/../x",
    ],
)
def test_bad_prefixes_are_refused(text: str) -> None:
    with pytest.raises(UserError):
        DockerName.parse(text)


def test_prefixes_match_whole_segments() -> None:
    ns = DockerName.parse("docker://127.0.0.1:5000/ns")
    assert DockerName.parse("docker://127.0.0.1:5000/ns/app").is_within(ns)
    assert not DockerName.parse("docker://127.0.0.1:5000/nsx/app").is_within(ns)
    assert not DockerName.parse("docker://127.0.0.1:5001/ns/app").is_within(ns)

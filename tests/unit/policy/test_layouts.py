"""``[layouts]``: the Docker reference a policy states for a local OCI layout (ADR 0028)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.policy._helpers import BASE, policy
from trustd.shared.ocisig.name import DockerReference
from trustd.shared.policy import PolicyFileError
from trustd.shared.policy.layouts import layout_identity, layout_problem, split_layout_key

REF = "docker://reg.example.com/ns/app"

PROBLEMS = [
    # (key, value, words in the problem; None: accepted)
    ("oci:/srv/app:v1", f"{REF}:v1", None),
    ("oci:/srv/app", REF, None),
    ("oci:/srv/app:v1", "docker://reg.example.com:5000/ns/app:v1", None),
    ("/srv/app:v1", f"{REF}:v1", "oci:/ABSOLUTE/DIR"),
    ("oci:srv/app:v1", f"{REF}:v1", "absolute path"),
    ("oci:/:v1", f"{REF}:v1", "absolute path"),
    ("oci:/srv/../app:v1", f"{REF}:v1", "normalized, as '/app'"),
    ("oci:/srv/app/:v1", f"{REF}:v1", "normalized"),
    ("oci://srv/app:v1", f"{REF}:v1", "normalized"),
    ("oci:/srv/app:-x", f"{REF}:v1", "is not a tag"),
    ("oci:/srv/app:v1", "reg.example.com/ns/app:v1", "docker://REGISTRY"),
    ("oci:/srv/app:v1", "docker://app:v1", "docker://docker.io/library/app:v1"),
    ("oci:/srv/app:v1", f"{REF}@sha256:{'a' * 64}", "pins a digest"),
    ("oci:/srv/app:v1", REF, "must have a tag exactly when the key has one"),
    ("oci:/srv/app", f"{REF}:v1", "must have a tag exactly when the key has one"),
    ("oci:/srv/app:v1", "docker://reg.example.com/NS/app:v1", "not lowercase"),
    ("oci:/srv/app:v1", 7, "docker://REGISTRY"),
]


@pytest.mark.parametrize(("key", "value", "words"), PROBLEMS)
def test_a_layout_entry_is_checked(key: str, value: object, words: str | None) -> None:
    problem = layout_problem(key, value)
    if words is None:
        assert problem is None
    else:
        assert problem is not None
        assert words in problem


def test_a_bad_entry_stops_the_policy_loading_with_its_line() -> None:
    text = BASE + '[layouts]\n"oci:rel/app:v1" = "docker://reg.example.com/ns/app:v1"\n'
    with pytest.raises(PolicyFileError, match=r"test.toml:9: layouts: .*absolute path"):
        policy(text)


def test_the_exact_key_wins_over_the_directory() -> None:
    loaded = policy(
        BASE + "[layouts]\n"
        f'"oci:/srv/app" = "{REF}"\n'
        f'"oci:/srv/app:v1" = "docker://reg.example.com/ns/pinned:v1"\n'
    )
    exact = layout_identity(loaded.layouts, "/srv/app", "v1")
    assert exact == ("oci:/srv/app:v1", DockerReference.parse("reg.example.com/ns/pinned:v1"))
    other = layout_identity(loaded.layouts, "/srv/app", "v2")
    assert other == ("oci:/srv/app", DockerReference.parse("reg.example.com/ns/app:v2"))
    latest = layout_identity(loaded.layouts, "/srv/app", None)
    assert latest is not None
    assert latest[1].tag == "latest"
    assert layout_identity(loaded.layouts, "/srv/app/sub", "v1") is None
    assert layout_identity(loaded.layouts, "/srv", "app") is None


_SEGMENT = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,8}", fullmatch=True).filter(
    lambda s: s not in (".", "..")
)


@given(st.lists(_SEGMENT, min_size=1, max_size=4), st.one_of(st.none(), _SEGMENT))
def test_every_accepted_key_splits_back_into_its_directory_and_tag(
    segments: list[str], tag: str | None
) -> None:
    directory = "/" + "/".join(segments)
    key = f"oci:{directory}" + (f":{tag}" if tag else "")
    value = REF + (f":{tag}" if tag else "")
    if tag is not None and not tag[0].isalnum():
        return
    assert layout_problem(key, value) is None
    assert split_layout_key(key) == (directory, tag)

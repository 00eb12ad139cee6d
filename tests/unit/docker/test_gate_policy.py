"""Unsigned Docker images: refused unless --insecure-options=image or a policy scope that
accepts unsigned images for the name the image will have (issue #7, ADR 0008)."""

from __future__ import annotations

import pytest

from tests._policy import SHIPPED
from trustd.shared.errors import UserError
from trustd.shared.insecure import Insecure
from trustd.shared.policy import accepts_unsigned, loads_policy
from trustd.unprivileged.docker import UNSIGNED_MESSAGE, parse_docker_ref
from trustd.unprivileged.docker.fetch import gate, registry_image_name

REF = "docker://127.0.0.1:5000/team/app:1.0"
POLICY = (
    SHIPPED.read_text() + '\n[scopes."127.0.0.1-5000/team".require]\ntype = "accept-anything"\n'
)


def test_the_store_name_is_what_scopes_match() -> None:
    assert registry_image_name(parse_docker_ref(REF)) == "127.0.0.1-5000/team/app"


def test_refused_without_the_flag_or_a_scope() -> None:
    policy = loads_policy(SHIPPED.read_bytes(), source="shipped")
    with pytest.raises(UserError, match="not supported"):
        gate(parse_docker_ref(REF), Insecure.NONE, lambda n: accepts_unsigned(policy, n))
    assert "try --insecure-options=image" in UNSIGNED_MESSAGE


def test_a_scope_that_accepts_unsigned_images_lets_it_in() -> None:
    policy = loads_policy(POLICY.encode(), source="test")
    gate(parse_docker_ref(REF), Insecure.NONE, lambda n: accepts_unsigned(policy, n))
    other = parse_docker_ref("docker://127.0.0.1:5000/other/app")
    with pytest.raises(UserError):
        gate(other, Insecure.NONE, lambda n: accepts_unsigned(policy, n))
    gate(other, Insecure.IMAGE, None)  # the flag alone passes this gate (the policy decides later)


def test_an_exact_name_tag_scope_applies_to_that_tag_only() -> None:
    """The tag becomes the image's version label, so ``name:tag`` is an exact scope here."""
    text = SHIPPED.read_text() + (
        '\n[scopes."127.0.0.1-5000/team/app:1.0".require]\ntype = "accept-anything"\n'
    )
    policy = loads_policy(text.encode(), source="test")
    gate(parse_docker_ref(REF), Insecure.NONE, lambda n: accepts_unsigned(policy, n))
    with pytest.raises(UserError, match="not supported"):
        gate(
            parse_docker_ref("docker://127.0.0.1:5000/team/app:2.0"),
            Insecure.NONE,
            lambda n: accepts_unsigned(policy, n),
        )

"""Unsigned Docker images fail closed: they need --insecure-options=image *and* a policy
scope that allows unsigned images for the name the image will have (threat model boundary
15, issue #12; ADR 0008 and 0009 said either one, the code now agrees with the threat model).
"""

from __future__ import annotations

import pytest

from tests._policy import SHIPPED
from trustd.shared.errors import PolicyViolationError, UserError
from trustd.shared.insecure import Insecure
from trustd.shared.policy import allows_unsigned, loads_policy
from trustd.unprivileged.docker import UNSIGNED_MESSAGE, parse_docker_ref
from trustd.unprivileged.docker._names import registry_image_name
from trustd.unprivileged.docker.fetch import gate

REF = "docker://127.0.0.1:5000/team/app:1.0"
ACCEPT = '\n[scopes."127.0.0.1-5000/team".require]\ntype = "accept-anything"\n'
INSECURE = (
    '\n[scopes."127.0.0.1-5000/team"]\n[scopes."127.0.0.1-5000/team".run]\n'
    'insecure_options = ["image"]\n'
)
DOCKER_ACCEPT = '\n[scopes."docker://127.0.0.1:5000/team".require]\ntype = "accept-anything"\n'
DOCKER_INSECURE = '\n[scopes."docker://127.0.0.1:5000/team".run]\ninsecure_options = ["image"]\n'


def _allows(text: str):  # type: ignore[no-untyped-def]
    policy = loads_policy(text.encode(), source="test")
    return lambda n: allows_unsigned(policy, n)


def test_the_store_name_is_what_scopes_match() -> None:
    assert registry_image_name(parse_docker_ref(REF)) == "127.0.0.1-5000/team/app"


def test_refused_without_the_flag_or_a_scope_and_the_hint_names_both() -> None:
    with pytest.raises(UserError, match="not supported") as err:
        gate(parse_docker_ref(REF), Insecure.NONE, _allows(SHIPPED.read_text()))
    assert "try --insecure-options=image" in UNSIGNED_MESSAGE
    hint = err.value.hint
    # the scope to write is spelled as the user typed the registry, never the store's mangling
    assert "--insecure-options=image" in hint and '"docker://127.0.0.1:5000/team/app"' in hint
    assert "127.0.0.1-5000" not in hint
    assert REF in hint  # the reference as the user typed it


def test_a_permitting_scope_alone_is_not_enough() -> None:
    """The way the docs said: accept-anything without the flag is refused, and the hint
    asks only for the flag (the scope already allows it)."""
    with pytest.raises(UserError, match="not supported") as err:
        gate(parse_docker_ref(REF), Insecure.NONE, _allows(SHIPPED.read_text() + ACCEPT))
    assert "--insecure-options=image" in err.value.hint and "policy" not in err.value.hint


def test_the_flag_alone_is_not_enough() -> None:
    with pytest.raises(PolicyViolationError, match="does not allow unsigned") as err:
        gate(parse_docker_ref(REF), Insecure.IMAGE, _allows(SHIPPED.read_text()))
    hint = err.value.hint
    assert "rkt trust" not in hint and f"rkt policy explain {REF}" in hint
    assert 'run.insecure_options lists "image"' in hint


@pytest.mark.parametrize(
    "extra",
    [ACCEPT, INSECURE, DOCKER_ACCEPT, DOCKER_INSECURE],
    ids=["accept-anything", "insecure-image", "docker-accept-anything", "docker-insecure-image"],
)
def test_the_flag_and_a_permitting_scope_pass(extra: str) -> None:
    allows = _allows(SHIPPED.read_text() + extra)
    gate(parse_docker_ref(REF), Insecure.IMAGE, allows)
    with pytest.raises(PolicyViolationError):  # another namespace: the default scope
        gate(parse_docker_ref("docker://127.0.0.1:5000/other/app"), Insecure.IMAGE, allows)


def test_an_exact_name_tag_scope_applies_to_that_tag_only() -> None:
    """The tag becomes the image's version label, so ``name:tag`` is an exact scope here."""
    allows = _allows(
        SHIPPED.read_text()
        + '\n[scopes."127.0.0.1-5000/team/app:1.0".require]\ntype = "accept-anything"\n'
    )
    gate(parse_docker_ref(REF), Insecure.IMAGE, allows)
    with pytest.raises(PolicyViolationError):
        gate(parse_docker_ref("docker://127.0.0.1:5000/team/app:2.0"), Insecure.IMAGE, allows)


def test_an_exact_docker_tag_scope_applies_to_that_tag_only() -> None:
    allows = _allows(
        SHIPPED.read_text()
        + '\n[scopes."docker://127.0.0.1:5000/team/app:1.0".require]\ntype = "accept-anything"\n'
    )
    gate(parse_docker_ref(REF), Insecure.IMAGE, allows)
    with pytest.raises(PolicyViolationError):
        gate(parse_docker_ref("docker://127.0.0.1:5000/team/app:2.0"), Insecure.IMAGE, allows)

"""Scope precedence: containers/image's TestPolicyContextRequirementsForImageRef, ported.

Upstream (signature/policy_eval_test.go) keys scopes by transport; trustd has one namespace of
appc names, so the transport rows (``atomic:unmatched``, an unconfigured transport) collapse
into ``default``. ``:tag`` is our ``:version`` label; hosts carry no port (AC Identifiers
cannot contain ``:``).
"""

from __future__ import annotations

import pytest

from tests.unit.policy._helpers import with_base
from trustd.shared.errors import UserError
from trustd.shared.policy import ImageRef, resolve

SCOPES = [
    "unmatched",
    "deep.com",
    "*.very.deep.com",
    "*.deep.com",
    "deep.com/n1",
    "deep.com/n1/n2",
    "deep.com/n1/n2/n3",
    "deep.com/n1/n2/n3/repo",
    "deep.com/n1/n2/n3/repo:tag2",
]
MATRIX = with_base("".join(f'[scopes."{s}"]\nmeasure = "off"\n' for s in SCOPES))

CASES = [
    ("deep.com/n1/n2/n3/repo:tag2", "deep.com/n1/n2/n3/repo:tag2"),
    ("deep.com/n1/n2/n3/repo:nottag2", "deep.com/n1/n2/n3/repo"),
    ("deep.com/n1/n2/n3/repo", "deep.com/n1/n2/n3/repo"),
    ("deep.com/n1/n2/n3/notrepo:tag2", "deep.com/n1/n2/n3"),
    ("deep.com/n1/n2/notn3/repo:tag2", "deep.com/n1/n2"),
    ("deep.com/n1/notn2/n3/repo:tag2", "deep.com/n1"),
    ("deep.com/notn1/n2/n3/repo:tag2", "deep.com"),
    ("very.deep.com/n1/n2/n3/repo:tag2", "*.deep.com"),
    ("not.very.deep.com/n1/n2/n3/repo:tag2", "*.very.deep.com"),
    ("this.does-not/match:anything", "default"),
    ("deep.com", "deep.com"),
    # whole path segments: a string prefix is not a scope hit (ADR 0002)
    ("deep.com/n1x/n2", "deep.com"),
    ("deep.com/n1/n2/n3/repox", "deep.com/n1/n2/n3"),
    ("deep.comx/n1", "default"),
    ("unmatchedx", "default"),
    ("unmatched/sub", "unmatched"),
    # *.domain never matches the domain itself
    ("com", "default"),
]


@pytest.mark.parametrize(("image", "scope"), CASES)
def test_most_specific_scope_wins(image: str, scope: str) -> None:
    assert resolve(MATRIX, ImageRef.parse(image)).scope == scope


@pytest.mark.parametrize(
    ("image", "shadowed"),
    [
        (
            "deep.com/n1/n2/n3/repo:tag2",
            (
                "deep.com/n1/n2/n3/repo",
                "deep.com/n1/n2/n3",
                "deep.com/n1/n2",
                "deep.com/n1",
                "deep.com",
                "default",
            ),
        ),
        ("not.very.deep.com/x", ("*.deep.com", "default")),
        ("this.does-not/match", ()),
    ],
)
def test_shadowed_scopes_are_reported_broadest_last(image: str, shadowed: tuple[str, ...]) -> None:
    assert resolve(MATRIX, ImageRef.parse(image)).shadowed == shadowed


@pytest.mark.parametrize("bad", ["Deep.com/x", "deep.com/x:", "deep.com/x:a/b", "", "a//b"])
def test_bad_image_refs_are_user_errors(bad: str) -> None:
    with pytest.raises(UserError):
        ImageRef.parse(bad)

"""AC Identifiers: appc's own good/bad lists, our stricter path rules, segment matching."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustd.shared.appc import ACIdentifier, ACName, InvalidIdentifierError

VECTORS = json.loads((Path(__file__).parents[2] / "vectors/appc-spec/identifiers.json").read_text())


@pytest.mark.parametrize("value", VECTORS["ACIdentifier"]["goodIdentifiers"])
def test_appc_good_identifiers(value: str) -> None:
    assert str(ACIdentifier.parse(value)) == value


@pytest.mark.parametrize(
    "value",
    [
        *VECTORS["ACIdentifier"]["badIdentifiers"],
        "a/../b",
        "a//b",
        "a/./b",
        "..",
        "https://example.com",
        "x" * 513,
    ],
)
def test_bad_identifiers(value: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        ACIdentifier.parse(value)


@pytest.mark.parametrize("value", VECTORS["ACName"]["goodNames"])
def test_appc_good_names(value: str) -> None:
    assert str(ACName(value)) == value


@pytest.mark.parametrize("value", VECTORS["ACName"]["badNames"])
def test_appc_bad_names(value: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        ACName(value)


def test_ancestors_longest_first() -> None:
    assert [str(a) for a in ACIdentifier("a.com/b/c").ancestors()] == [
        "a.com/b/c",
        "a.com/b",
        "a.com",
    ]


segment = st.from_regex(r"[a-z0-9]([a-z0-9._~-]{0,6}[a-z0-9])?", fullmatch=True).filter(
    lambda s: s not in (".", "..")
)
identifiers = st.lists(segment, min_size=1, max_size=5).map("/".join)


@given(identifiers, identifiers)
def test_is_within_means_whole_segment_ancestor(name: str, prefix: str) -> None:
    n, p = ACIdentifier(name), ACIdentifier(prefix)
    assert n.is_within(p) == (name == prefix or name.startswith(prefix + "/"))
    assert n.is_within(p) == (p in n.ancestors())


@given(st.text(max_size=40))
def test_parse_raises_only_our_error(value: str) -> None:
    try:
        ident = ACIdentifier.parse(value)
    except InvalidIdentifierError:
        return
    assert ".." not in ident.segments and "" not in ident.segments
    assert not value.startswith("/")

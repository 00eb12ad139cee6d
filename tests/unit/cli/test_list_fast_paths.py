"""``rkt list``'s fast paths (issue #14) decode exactly what the general code decodes: the
C scanner straight away for info.json (``loads_exact``, shared with the store index) against
``json.loads``, and the networks of net-info.json's text (``networks_of``) against
``pod_networks`` reading the same file."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from trustd.cli._net import NET_INFO, networks_of, pod_networks
from trustd.shared._jsonexact import loads_exact

_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=12,
)
# what a file may hold: JSON, JSON with something before or after it, or anything at all
_texts = st.one_of(
    _values.map(json.dumps),
    st.tuples(_values.map(json.dumps), st.text(max_size=8)).map("".join),
    st.tuples(st.text(max_size=8), _values.map(json.dumps)).map("".join),
    st.text(),
).map(str.strip)  # _read_at strips what it read


def _outcome(decode: object, text: str) -> tuple[str, object]:
    try:
        return ("value", repr(decode(text)))  # type: ignore[operator]  # repr: NaN != NaN
    except ValueError as exc:
        return ("error", str(exc))


@given(_texts)
def test_json_decodes_what_json_loads_decodes(text: str) -> None:
    assert _outcome(loads_exact, text) == _outcome(json.loads, text)


@given(_texts | st.none())
def test_networks_of_text_is_pod_networks_of_the_file(text: str | None) -> None:
    def read(name: str) -> str | None:
        assert name == NET_INFO
        return text

    assert networks_of(text) == pod_networks(read)


def test_pod_networks_of_an_unreadable_file_is_none() -> None:
    def read(_name: str) -> str | None:
        raise PermissionError(13, "Permission denied")

    assert pod_networks(read) == []

"""Rendering ac-discovery URL templates: edge cases and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustd.shared.appc.identifier import ACIdentifier
from trustd.unprivileged.discovery import ACIEndpoint
from trustd.unprivileged.discovery._template import render, render_endpoint

NAME = ACIdentifier("example.com/app/web")
FULL = {"version": "1.0.0", "os": "linux", "arch": "amd64"}

RENDERED = [
    # template, labels, expected aci URL (asc is the same with .aci.asc), or None
    (
        "https://s/{name}-{version}-{os}-{arch}.{ext}",
        FULL,
        "https://s/example.com/app/web-1.0.0-linux-amd64.aci",
    ),
    ("https://s/{name}-{version}.{ext}", {}, "https://s/example.com/app/web-latest.aci"),
    (
        "https://s/{name}-{version}.{ext}",
        {"version": ""},
        "https://s/example.com/app/web-latest.aci",
    ),
    ("https://s/{name}.{ext}", {"name": "evil"}, "https://s/example.com/app/web.aci"),
    ("https://s/{name}.{ext}", {"ext": "exe"}, "https://s/example.com/app/web.aci"),
    (
        "https://s/{name}-{channel}.{ext}",
        {"channel": "beta"},
        "https://s/example.com/app/web-beta.aci",
    ),
    ("https://s/{name}-{os}.{ext}", {"version": "1"}, None),  # label not given
    ("https://s/{name}-{unknown}.{ext}", FULL, None),
    ("https://s/{name}-{version}.{ext}", {"version": "{os}"}, None),  # never expanded
    ("https://s/{name}-{version}.{ext}", {"version": "1}"}, None),
    ("https://s/{{name}}.{ext}", FULL, None),
    ("https://s/{name.{ext}", FULL, None),  # a lone brace: appc kept it, we discard
    ("https://s/{}.{ext}", FULL, None),
    ("https://s/{NAME}.{ext}", FULL, None),  # variables are case-sensitive
]


@pytest.mark.parametrize(("template", "labels", "aci"), RENDERED)
def test_render_endpoint(template: str, labels: dict[str, str], aci: str | None) -> None:
    got = render_endpoint(template, NAME, labels)
    if aci is None:
        assert got is None
    else:
        assert got == ACIEndpoint(aci=aci, asc=aci + ".asc")


def test_template_without_ext_gives_the_same_url_twice() -> None:
    """appc accepts it; whether such an endpoint is usable is the fetcher's business."""
    assert render_endpoint("https://s/x", NAME, {}) == ACIEndpoint("https://s/x", "https://s/x")


_braced = st.text(alphabet="{}abcnameosextvrion-./:", max_size=40)
_labels = st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4)


@given(template=st.text(max_size=80) | _braced, labels=_labels)
def test_leftover_braces_are_always_discarded(template: str, labels: dict[str, str]) -> None:
    got = render_endpoint(template, NAME, labels)
    if got is not None:
        for url in (got.aci, got.asc):
            assert "{" not in url
            assert "}" not in url


@given(template=_braced, values=st.dictionaries(st.text(max_size=6), st.text(max_size=6)))
def test_render_never_leaves_a_brace(template: str, values: dict[str, str]) -> None:
    out = render(template, values)
    assert out is None or ("{" not in out and "}" not in out)

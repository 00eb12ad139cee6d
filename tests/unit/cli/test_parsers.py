"""Parsers of what a user types raise UserError, never a bare ValueError (issue #10)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustd.cli._apps import parse_volume
from trustd.cli.image import parse_duration
from trustd.shared.errors import TrustdError, UserError
from trustd.unprivileged.fetch.request import parse_image_ref


@pytest.mark.parametrize(
    "text",
    [
        "a,kind=host,source=/x,readOnly=maybe",  # once read as false
        "=,=,=",
        "data,kind=host",
        "data,kind=empty,source=/x",
        "data,kind=dir",
        "data,readonly=true",
        "data,kind=empty,kind=host,source=/x",
        "Data",
    ],
)
def test_a_bad_volume_is_refused(text: str) -> None:
    with pytest.raises(UserError):
        parse_volume(text)


def test_a_good_volume_parses() -> None:
    vol = parse_volume("data,kind=host,source=/srv,readOnly=true")
    assert (vol.name, vol.kind, vol.source, vol.readonly) == ("data", "host", "/srv", True)
    assert parse_volume("scratch").kind == "empty"


@pytest.mark.parametrize("text", ["9" * 30 + "h", "1x", "", "-1s"])
def test_a_bad_duration_is_a_user_error(text: str) -> None:
    with pytest.raises(UserError):
        parse_duration(text)


@pytest.mark.parametrize("text", ["http://[::1", "file://[::1/x", "docker://[::1"])
def test_an_unparseable_url_is_a_user_error(text: str) -> None:
    with pytest.raises(UserError, match="is not an image name or URL"):
        parse_image_ref(text)


@given(st.text(max_size=80))
def test_any_image_argument_parses_or_is_a_domain_error(text: str) -> None:
    try:
        ref = parse_image_ref(text)
    except TrustdError as exc:
        assert exc.message
    else:
        assert ref.text == text

"""The lean parse of a plain ``rkt run`` (trustd/cli/_fastrun.py, issue #14): for any
argument vector it either declines or yields exactly the full parser's namespace."""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustd.cli import _fastrun
from trustd.cli.main import VERBS, _hoist, _route_subverbs, full_parse
from trustd.shared.errors import UserError
from trustd.shared.insecure import Insecure

IMAGES = ("sha512-9d870211683a", "example.com/app:1.0", "busybox", "run", "a=b", "", "-x", "---")
VALUES: tuple[str, ...] = (
    "",
    "none",
    "default",
    "fly",
    "new",
    "never",
    "private",
    "/tmp/d",
    "rel/d",
    "image",
)
VALUES += ("image,tls", "bogus", "true", "false", "0", "T", "--net", "a=b", "x y")
FLAGS = (
    "--dir",
    "--system-config",
    "--local-config",
    "--user-config",
    "--insecure-options",
    "--debug",
    "--trust-keys-from-https",
    "--net",
    "--stage1-name",
    "--pull-policy",
    "--hostname",
    "--uuid-file-save",
    "--ipc",
    "--no-overlay",
    "--private-users",
    "--inherit-env",
    "--interactive",
    "--mds-register",
    "--store-only",
    "--dns",
    "--volume",
    "--exec",
    "--readonly-rootfs",
    "--help",
    "--version",
)
OTHER = ("--", "-h", "run", "fetch", "image", "list", "---")


@st.composite
def flag_words(draw: st.DrawFn) -> list[str]:
    flag = draw(st.sampled_from(FLAGS))
    form = draw(st.sampled_from(("=", "bare", "space")))
    if form == "bare":
        return [flag]
    value = draw(st.sampled_from(VALUES))
    return [f"{flag}={value}"] if form == "=" else [flag, value]


@st.composite
def run_vectors(draw: st.DrawFn) -> list[str]:
    """Mostly the shape the lean parse reads, with every kind of deviation mixed in."""
    before = draw(st.lists(flag_words(), max_size=3))
    after = draw(st.lists(flag_words(), max_size=4))
    tail = draw(st.lists(st.sampled_from(IMAGES + OTHER), min_size=0, max_size=3))
    verb = draw(st.sampled_from(("run", "run", "run", "fetch", "prepare")))
    words = [w for ws in before for w in ws] + [verb] + [w for ws in after for w in ws] + tail
    if draw(st.booleans()) and words:  # a word moved anywhere
        word = words.pop(draw(st.integers(0, len(words) - 1)))
        words.insert(draw(st.integers(0, len(words))), word)
    return words


@st.composite
def plain_runs(draw: st.DrawFn) -> list[str]:
    """The lean parse's own shape, ``=`` or bare flags and one image last; the values (good
    and bad) decide."""
    known = FLAGS[:18]  # the flags the lean parse reads
    bare_or_eq = st.tuples(st.sampled_from(known), st.sampled_from((None, *VALUES)))
    pairs = draw(st.lists(bare_or_eq, max_size=4)), draw(st.lists(bare_or_eq, max_size=4))
    before, after = ([f if v is None else f"{f}={v}" for f, v in ps] for ps in pairs)
    return [*before, "run", *after, draw(st.sampled_from(IMAGES))]


def _routed(argv: list[str]) -> tuple[list[str], str]:
    """What ``main`` hands its parsers: the routed and hoisted words, and the verb."""
    words = _hoist(_route_subverbs(argv))
    return words, next((a for a in words if a in VERBS), "rkt")


def _full(words: list[str], verb: str) -> argparse.Namespace | None:
    """The full parser's namespace, or None where it refuses, prints help or exits."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            return full_parse(words, verb)
        except (UserError, SystemExit):
            return None


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(run_vectors())
def test_the_lean_parse_declines_or_agrees_with_the_full_parser(argv: list[str]) -> None:
    _declines_or_agrees(argv)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(plain_runs())
def test_on_plain_runs_the_lean_parse_declines_or_agrees(argv: list[str]) -> None:
    _declines_or_agrees(argv)


def _declines_or_agrees(argv: list[str]) -> None:
    words, verb = _routed(argv)
    lean = _fastrun.parse(words)
    if lean is None:
        return
    full = _full(words, verb)
    assert full is not None, words  # the lean parse took what the full parser refuses
    assert vars(lean) == vars(full), words


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "sha512-9d87"],
        ["--dir=/tmp/d", "--insecure-options=image", "run", "--net=none", "sha512-9d87"],
        ["--dir=d", "run", "--stage1-name=fly", "--debug", "busybox"],
        ["run", "--net", "--no-overlay=false", "--ipc=private", "--dir=/x", "example.com/a:1"],
        ["--debug=0", "run", "--uuid-file-save=u", "--hostname=h", "--pull-policy=never", "i"],
        ["--net=none", "run", "busybox"],  # hoisted to after the verb first, as rkt does
    ],
)
def test_the_plain_runs_are_read_by_the_lean_parse(argv: list[str]) -> None:
    """The forms bench/start.py and most scripts use are the lean parse's, and equal."""
    words, verb = _routed(argv)
    lean = _fastrun.parse(words)
    assert lean is not None
    assert vars(lean) == vars(_full(words, verb))


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--help"],
        ["run", "--stage1-name", "fly", "busybox"],  # the value in the next word
        ["run", "busybox", "--exec=/bin/sh"],  # an app flag
        ["run", "busybox", "--", "-c", "true"],
        ["run", "a", "b"],
        ["run", "--store-only", "busybox"],  # deprecated: the full parser warns
        ["run", "--debug=maybe", "busybox"],
        ["run", "--insecure-options=bogus", "busybox"],
        ["run"],
    ],
)
def test_everything_else_goes_to_the_full_parser(argv: list[str]) -> None:
    assert _fastrun.parse(_routed(argv)[0]) is None


def test_a_lean_namespace_is_typed_as_the_full_parsers() -> None:
    lean = _fastrun.parse(["--dir=d", "--insecure-options=image", "run", "--uuid-file-save=u", "i"])
    assert lean is not None
    assert lean.dir == Path("d").absolute()
    assert lean.insecure_options == Insecure.IMAGE
    assert lean.uuid_file_save == Path("u")

"""argparse's message lookups are cached while rkt's ``main()`` runs (issue #14: ~900 failed
``stat`` calls per parser build), and put back as they were after, so a program that embeds
``main()`` keeps argparse's own lookups (a locale it changes later is honoured)."""

from __future__ import annotations

import argparse

import pytest

from trustd.cli._common import cached_gettext
from trustd.cli.main import main


def test_inside_the_lookups_are_cached_and_after_they_are_argparses_own() -> None:
    own = (argparse._, argparse.ngettext)  # type: ignore[attr-defined]
    with cached_gettext():
        cached = argparse._  # type: ignore[attr-defined]
        assert cached is not own[0]
        hits = cached.cache_info().hits
        cached("usage: ")
        cached("usage: ")
        assert cached.cache_info().hits >= hits + 1  # the second lookup did not reach gettext
    assert (argparse._, argparse.ngettext) == own  # type: ignore[attr-defined]


def test_main_leaves_argparse_as_it_found_it(capsys: pytest.CaptureFixture[str]) -> None:
    own = (argparse._, argparse.ngettext)  # type: ignore[attr-defined]
    assert main(["version"]) == 0
    assert "rkt Version" in capsys.readouterr().out
    assert main(["no-such-verb"]) != 0  # a usage error leaves it as it found it, too
    assert (argparse._, argparse.ngettext) == own  # type: ignore[attr-defined]

"""Finding ac-discovery meta tags in HTML: table cases, vector pages, properties."""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.discovery._cases import PAGES
from trustd.unprivileged.discovery import MetaTag
from trustd.unprivileged.discovery._parse import decode_page, parse_meta_tags
from trustd.unprivileged.discovery.model import AC_DISCOVERY as D
from trustd.unprivileged.discovery.model import AC_DISCOVERY_PUBKEYS as K

T = "https://s.example.com/{name}.{ext}"

PARSED = [
    # document, expected (kind, prefix, url) tags
    (f'<meta name="{D}" content="example.com {T}">', [(D, "example.com", T)]),
    (f'<META NAME="{D}" CONTENT="example.com {T}"/>', [(D, "example.com", T)]),
    (f'<meta content="example.com {T}" name="{D}">', [(D, "example.com", T)]),
    (
        f"<body><p><meta name={K} content='a.com https://a.com/k'></p>",
        [(K, "a.com", "https://a.com/k")],
    ),
    (f'<meta name="{D}" content="  example.com \t {T}  ">', [(D, "example.com", T)]),
    (
        f'<meta name="{K}" content="a.com https://a.com/k?x=1&amp;y=2">',
        [(K, "a.com", "https://a.com/k?x=1&y=2")],
    ),
    (f'<meta name="x" name="{K}" content="a.com https://k">', [(K, "a.com", "https://k")]),
    # ignored: incomplete content, other names, spaces in the URL, commented out
    (f'<meta name="{D}" content="example.com">', []),
    (f'<meta name="{D}" content="">', []),
    (f'<meta name="{D}">', []),
    (f'<meta content="example.com {T}">', []),
    (f'<meta name="AC-DISCOVERY" content="example.com {T}">', []),
    (f'<meta name="ac-discovery-other" content="example.com {T}">', []),
    (f'<meta name="{K}" content="a.com https://a.com/k extra">', []),
    (f'<!-- <meta name="{K}" content="a.com https://k"> -->', []),
    (f'<!-- unterminated <meta name="{K}" content="a.com https://k">', []),
    (f'<metadata name="{K}" content="a.com https://k">', []),
]


@pytest.mark.parametrize(("document", "expected"), PARSED)
def test_parse_meta_tags(document: str, expected: list[tuple[str, str, str]]) -> None:
    assert [(t.kind, t.prefix, t.url) for t in parse_meta_tags(document)] == expected


def test_vector_page_with_three_templates_keeps_page_order() -> None:
    tags = parse_meta_tags((PAGES / "meta06.html").read_text())
    assert [t.kind for t in tags] == [D, D, D, K]
    assert tags[2].url.startswith("hdfs://")


def test_undecodable_bytes_do_not_hide_tags() -> None:
    body = b"\xff\xfe<meta name='ac-discovery-pubkeys' content='a.com https://k'>\x80"
    assert parse_meta_tags(decode_page(body)) == (MetaTag(K, "a.com", "https://k"),)


_SCANS = (
    "goahead",
    "parse_starttag",
    "check_for_whole_start_tag",
    "parse_endtag",
    "parse_comment",
    "parse_bogus_comment",
    "parse_html_declaration",
    "parse_pi",
)


def _work(monkeypatch: pytest.MonkeyPatch, parse: Callable[[str], object], document: str) -> int:
    """Characters of input handled: the document once (the pre-pass is a constant number of
    linear scans) plus, for every html.parser scanning step, the characters it can look at
    from where it starts (its regexes search to the end of the buffer: that is CVE-2025-6069).
    A work counter, not a clock: a loaded machine cannot change it (CONVENTIONS 14b)."""
    seen = [len(document)]
    with monkeypatch.context() as m:
        for name in _SCANS:
            original = getattr(HTMLParser, name)

            def counted(self: HTMLParser, i: int, *a: object, _f: Any = original) -> object:
                seen[0] += len(self.rawdata) - (0 if _f.__name__ == "goahead" else i)
                return _f(self, i, *a)

            m.setattr(HTMLParser, name, counted)
        parse(document)
    return seen[0]


def _raw_html_parser(document: str) -> None:
    parser = HTMLParser()
    parser.feed(document)
    parser.close()


HOSTILE = {
    "unterminated-tags": lambda n: "<a " * n,
    "unterminated-comments": lambda n: "<!--a>" * n,
    "unterminated-metas": lambda n: "<meta " * n,
    "huge-meta": lambda n: "<meta " + "<a " * n + ">",
    "many-metas": lambda n: f'<meta name="{K}" content="a.com https://k">' * n,
}


@pytest.mark.parametrize("make", HOSTILE.values(), ids=HOSTILE.keys())
def test_cve_2025_6069_quadratic_markup_parses_in_linear_work(
    monkeypatch: pytest.MonkeyPatch, make: Callable[[int], str]
) -> None:
    """html.parser on 3.11 needs hours for 1 MiB of these. Four times the input must cost
    at most about four times the work (quadratic would be sixteen)."""
    small = _work(monkeypatch, parse_meta_tags, make(2_000))
    large = _work(monkeypatch, parse_meta_tags, make(8_000))
    assert large <= 4.5 * small


def test_the_work_counter_sees_the_quadratic_parser() -> None:
    """The measure above is meaningful: fed whole to html.parser, the same markup costs
    about sixteen times the work at four times the size."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        small = _work(monkeypatch, _raw_html_parser, "<a " * 500)
        large = _work(monkeypatch, _raw_html_parser, "<a " * 2_000)
    assert large > 12 * small


_fragments = st.sampled_from(
    [
        "<meta ",
        "<META ",
        "name=",
        f'"{D}"',
        f"'{K}'",
        "content=",
        '"',
        "'",
        ">",
        "/>",
        "example.com ",
        "https://x/{name}",
        "<!--",
        "-->",
        "<![",
        "<!",
        "<?",
        "</",
        "&amp;",
        "&#",
        " ",
        "\t",
        "<a ",
        "<script>",
        "]]>",
        "=",
        "{",
        "}",
        "\x00",
    ]
)


@given(st.lists(_fragments, max_size=40).map("".join) | st.text(max_size=300))
def test_parser_never_raises_and_only_returns_complete_tags(document: str) -> None:
    for tag in parse_meta_tags(document):
        assert tag.kind in (D, K)
        assert tag.prefix
        assert tag.url
        assert not any(c.isspace() for c in tag.prefix + tag.url)


@given(st.binary(max_size=300))
def test_any_bytes_decode_and_parse(body: bytes) -> None:
    parse_meta_tags(decode_page(body))

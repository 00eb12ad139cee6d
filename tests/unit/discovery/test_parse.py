"""Finding ac-discovery meta tags in HTML: table cases, vector pages, properties."""

from __future__ import annotations

import time

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


@pytest.mark.parametrize(
    "hostile",
    ["<a " * 350_000, "<!--a>" * 170_000, "<meta " * 170_000, "<meta " + "<a " * 340_000 + ">"],
    ids=["unterminated-tags", "unterminated-comments", "unterminated-metas", "huge-meta"],
)
def test_cve_2025_6069_quadratic_markup_parses_in_linear_time(hostile: str) -> None:
    """html.parser on 3.11 needs hours for 1 MiB of these. Linear, not quadratic: twice the
    input takes about twice the time, not four times (the ratio of work at two sizes, no
    wall-clock threshold: CONVENTIONS 14b; 50 ms of slack for inputs parsed in microseconds)."""

    def seconds(text: str) -> float:
        best = float("inf")
        for _ in range(2):
            start = time.monotonic()
            parse_meta_tags(text)
            best = min(best, time.monotonic() - start)
        return best

    small, large = seconds(hostile), seconds(hostile + hostile)
    assert large < 3 * small + 0.05, (small, large)


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

"""Find appc discovery meta tags in an HTML page (appc spec 0.8.11, discovery.md).

Any ``<meta>`` anywhere in the document counts. The ``content`` attribute is the prefix,
whitespace, then the URL; tags whose content lacks either part, or whose URL part has
whitespace in it (no URL does), are ignored.

Why the page is not fed to ``html.parser`` whole: on Python 3.11 its recovery from
unterminated markup is quadratic (CVE-2025-6069; 64 KiB of ``<a `` takes 25 s, so a
1 MiB page would take hours). So a linear pre-pass drops comments (an unterminated one
runs to the end, as in HTML) and cuts out each ``<meta ...>`` span, and ``html.parser``
parses only those spans: attribute quoting, case and entities stay its job. The spans end
at the first ``>``, so an attribute value containing ``>`` is cut there; no URL or prefix
we use can contain a raw ``>``. Unlike a full tokenizer, a ``<meta>`` written inside
``<script>`` or ``<style>`` text is also seen.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import cast

from trustd.unprivileged.discovery.model import (
    AC_DISCOVERY,
    AC_DISCOVERY_PUBKEYS,
    MetaKind,
    MetaTag,
)

_KINDS = frozenset({AC_DISCOVERY, AC_DISCOVERY_PUBKEYS})
_META_SPAN = re.compile(r"<meta(?=[\s/>])[^>]*>", re.IGNORECASE)


def _tag(attrs: list[tuple[str, str | None]]) -> MetaTag | None:
    """The meta tag these attributes describe, if it is a complete discovery tag."""
    values = {key: value for key, value in attrs if value is not None}  # the last one wins
    kind = values.get("name", "")
    fields = values.get("content", "").split(maxsplit=1)
    if kind not in _KINDS or len(fields) != 2:
        return None
    prefix, url = fields[0], fields[1].strip()
    if any(c.isspace() for c in url):
        return None
    return MetaTag(cast(MetaKind, kind), prefix, url)


class _MetaCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[MetaTag] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "meta" and (found := _tag(attrs)) is not None:
            self.tags.append(found)


def _without_comments(document: str) -> str:
    """``document`` minus ``<!-- ... -->`` comments, in one linear pass."""
    kept: list[str] = []
    pos = 0
    while (start := document.find("<!--", pos)) >= 0:
        kept.append(document[pos:start])
        end = document.find("-->", start + 4)
        if end < 0:
            return "".join(kept)
        pos = end + 3
    kept.append(document[pos:])
    return "".join(kept)


def _meta_spans(document: str) -> list[str]:
    """Every ``<meta ...>`` start tag outside comments, in order. Linear time: after the
    cut at the last ``>``, every candidate the regex tries ends in a match."""
    text = _without_comments(document)
    text = text[: text.rfind(">") + 1]
    return [m.group(0) for m in _META_SPAN.finditer(text)]


def parse_meta_tags(document: str) -> tuple[MetaTag, ...]:
    """Every complete ac-discovery / ac-discovery-pubkeys tag, in document order."""
    collector = _MetaCollector()
    for span in _meta_spans(document):
        try:
            collector.feed(span)
            collector.close()
        except AssertionError:
            collector.reset()  # html.parser gave up on this span; it held no usable tag
    return tuple(collector.tags)


def decode_page(body: bytes) -> str:
    """Discovery pages are read as UTF-8; undecodable bytes cannot form a tag we use."""
    return body.decode("utf-8", errors="replace")

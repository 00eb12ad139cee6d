"""rkt's output shapes: Go's tabwriter (rkt's ``getTabOutWithWriter``: tabs, padding 1,
tab stops of 8), go-humanize's relative times, Go's ``2006-01-02 15:04:05.999 -0700 MST``
layout and encoding/json's compact and ``MarshalIndent(v, "", "\\t")`` output."""

from __future__ import annotations

import json
from bisect import bisect_right
from datetime import UTC, datetime, timedelta
from typing import Any

from trustd.shared.errors import printable

TAB_WIDTH = 8
_MINUTE, _HOUR, _DAY = 60, 3600, 86400
_WEEK, _MONTH = 7 * _DAY, 30 * _DAY
_YEAR = 12 * _MONTH
# go-humanize's defaultMagnitudes: (below, format, divisor)
_MAGNITUDES: tuple[tuple[float, str, int], ...] = (
    (1, "now", 1),
    (2, "1 second {}", 1),
    (_MINUTE, "{n} seconds {}", 1),
    (2 * _MINUTE, "1 minute {}", 1),
    (_HOUR, "{n} minutes {}", _MINUTE),
    (2 * _HOUR, "1 hour {}", 1),
    (_DAY, "{n} hours {}", _HOUR),
    (2 * _DAY, "1 day {}", 1),
    (_WEEK, "{n} days {}", _DAY),
    (2 * _WEEK, "1 week {}", 1),
    (_MONTH, "{n} weeks {}", _WEEK),
    (2 * _MONTH, "1 month {}", 1),
    (_YEAR, "{n} months {}", _MONTH),
    (18 * _MONTH, "1 year {}", 1),
    (2 * _YEAR, "2 years {}", 1),
    (37 * _YEAR, "{n} years {}", _YEAR),
    (float("inf"), "a long while {}", 1),
)
_BELOW = tuple(below for below, _, _ in _MAGNITUDES)
# each format as (counted, words, labelled): "{n} seconds {}" -> (True, " seconds ", True),
# "1 minute {}" -> (False, "1 minute ", True), "now" -> (False, "now", False); the text
# built by concatenation, which str.format with a keyword costs three times over (issue
# #14: twice per pod of rkt list, twice per image of rkt image list)
_SHAPES = tuple(
    (fmt.startswith("{n}"), fmt.removeprefix("{n}").removesuffix("{}"), fmt.endswith("{}"))
    for _, fmt, _ in _MAGNITUDES
)


def humanize(then: datetime, now: datetime | None = None) -> str:
    """go-humanize ``Time``: ``now``, ``3 seconds ago``, ``2 hours from now``..."""
    delta = ((now or datetime.now(UTC)) - then).total_seconds()
    label = "ago" if delta >= 0 else "from now"
    delta = abs(delta)
    # the first magnitude ``delta`` is below (go-humanize walks them in order; the bounds
    # rise, so a bisection finds the same one: issue #14, 20,000 times per 10,000 images)
    at = bisect_right(_BELOW, delta)
    counted, words, labelled = _SHAPES[at]
    text = f"{int(delta // _MAGNITUDES[at][2])}{words}" if counted else words
    return text + label if labelled else text


_IEC = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def ibytes(size: int) -> str:
    """go-humanize ``IBytes``: ``5 B``, ``1.5 KiB``, ``12 MiB`` (powers of 1024, one
    decimal below 10, rounded half up)."""
    if size < 10:
        return f"{size} B"
    # the largest power of 1024 not above ``size`` (capped at EiB), from its bit length:
    # 1024**e <= size < 1024**(e+1) exactly when 10e <= bit_length-1 < 10e+10 (issue #14:
    # once per image of rkt image list)
    exp = min((size.bit_length() - 1) // 10, len(_IEC) - 1)
    value = int(size / 1024**exp * 10 + 0.5) / 10
    return f"{value:.1f} {_IEC[exp]}" if value < 10 else f"{value:.0f} {_IEC[exp]}"


def go_time(when: datetime) -> str:
    """Go's ``2006-01-02 15:04:05.999 -0700 MST`` in local time (rkt's defaultTimeLayout)."""
    local = when.astimezone()
    millis = f"{local.microsecond // 1000:03d}".rstrip("0")
    offset = local.strftime("%z") or "+0000"
    return (
        local.strftime("%Y-%m-%d %H:%M:%S")
        + (f".{millis}" if millis else "")
        + (f" {offset} {local.tzname() or 'UTC'}")
    )


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def unix_nanos(when: datetime | None) -> int | None:
    if when is None:
        return None
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def tab_text(rows: list[list[str]]) -> str:
    """Go's text/tabwriter as rkt configures it: every cell but a line's last is followed by
    tabs up to its column's width (widest cell + 1, rounded up to a tab stop)."""
    table = [[printable(c) for c in row] for row in rows]
    if not table:
        return ""
    columns = max(len(r) for r in table) - 1
    widths = []
    for i in range(columns):
        width = max((len(r[i]) for r in table if len(r) > i + 1), default=0) + 1
        widths.append(-(-width // TAB_WIDTH) * TAB_WIDTH)
    lines = []
    for row in table:
        cells = [c + "\t" * -(-(widths[i] - len(c)) // TAB_WIDTH) for i, c in enumerate(row[:-1])]
        lines.append("".join(cells) + row[-1])
    return "\n".join(lines)


def tab_columns(columns: list[list[str]]) -> str:
    """:func:`tab_text` of the table whose columns are ``columns`` (each as long as the
    others): the same text, built a column at a time (issue #14: 10,000 images). A column
    whose text is printable as one string needs no cell escaped; each cell's tabs come from
    one list per column, indexed by the cell's length."""
    if not columns or not columns[0]:
        return ""
    shown = [col if "".join(col).isprintable() else [printable(c) for c in col] for col in columns]
    padded = []
    for col in shown[:-1]:
        width = -(-(max(map(len, col)) + 1) // TAB_WIDTH) * TAB_WIDTH
        tabs = ["\t" * -(-(width - n) // TAB_WIDTH) for n in range(width)]
        padded.append([c + tabs[len(c)] for c in col])
    padded.append(shown[-1])
    return "\n".join(map("".join, zip(*padded, strict=True)))


def go_json(doc: Any, *, pretty: bool) -> str:
    """encoding/json: ``Marshal`` (compact) or ``MarshalIndent(v, "", "\\t")``, with every
    character that is not printable ``\\u``-escaped: json.dumps escapes C0 controls only,
    and the document may be the group's (``rkt image cat-manifest`` prints the stored
    manifest: a C1 CSI or a bidi override in a label drove root's terminal, red team 8)."""
    if pretty:
        return _escape_unprintable(json.dumps(doc, indent="\t", ensure_ascii=False))
    return _escape_unprintable(json.dumps(doc, separators=(",", ":"), ensure_ascii=False))


_LAYOUT = str.maketrans("", "", "\t\n")  # MarshalIndent's own whitespace


def _escape_unprintable(text: str) -> str:
    """JSON ``text`` with each unprintable character of its strings as a ``\\u`` escape (a
    JSON text holds such characters in strings only, so the value is unchanged)."""
    if text.translate(_LAYOUT).isprintable():
        return text
    return "".join(c if c.isprintable() or c in "\t\n" else _json_escape(c) for c in text)


def _json_escape(c: str) -> str:
    n = ord(c)
    if n > 0xFFFF:  # a surrogate pair, as JSON spells a code point beyond the BMP
        n -= 0x10000
        return f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}"
    return f"\\u{n:04x}"

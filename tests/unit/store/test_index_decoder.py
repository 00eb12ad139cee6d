"""The listing's row decoders (issue #14) take and refuse exactly what ``_row`` does: each
labels and provenance text is decoded once and remembered, and a hostile row among good ones
that share its texts is refused with the same reason as on its own; the table's decoder,
which checks a provenance text of the writer's grammar by that grammar and builds no record,
shows what ``_row``'s record shows, and refuses what it refuses, with its reason. go-humanize's
magnitudes found by bisection give what walking them in order gives, and the table built a
column at a time is the one built a row at a time."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from trustd.cli._format import _MAGNITUDES, humanize, tab_columns, tab_text
from trustd.shared.errors import LocalStateError
from trustd.shared.store._rows import _decoder, _row, _shown, _table_decoder
from trustd.shared.store.model import Provenance

DIGESTS = [hashlib.sha512(str(n).encode()).hexdigest() for n in range(3)]
GOOD_PROVENANCE = json.dumps(
    {"signers": [], "insecure": True, "verified_at": "2026-01-01T00:00:00+00:00"}
)
WHEN = "2026-12-02T10:00:00.123456+00:00"
# as the index's writer stores them (Index.insert: json.dumps of to_json), so the table's
# decoder meets its grammar
WRITTEN = [
    json.dumps(Provenance((), True, WHEN).to_json()),
    json.dumps(Provenance(("AB" * 20, "CD" * 20), False, WHEN, "example.com/a").to_json()),
    json.dumps(
        Provenance(
            ("AB" * 20,), False, WHEN, "docker://r/a", "sha256:00", "sigstore", "r/a"
        ).to_json()
    ),
]

KEYS = st.sampled_from([f"sha512-{d[:64]}" for d in DIGESTS] + ["sha512-../x", None, 7])
DIGEST = st.sampled_from([*DIGESTS, DIGESTS[0].upper(), b"x", None])
LABELS = st.sampled_from(
    [
        *('[["version", "1"]]', "[]", '[["a"]]', "[[1, 2]]", '["ab"]', "[", "{}", 5, None, b"[]"),
        *("[" * 5000, '[["version", "1"]]'.encode("utf-16")),  # red team 9
    ]
)
TIMES = st.sampled_from(
    [WHEN, "2026-12-02", "yesterday", "", 0, None, b"x", "0001-01-01T00:00:00+23:59"]
)
SIZES = st.sampled_from([0, 1000, "12", "x", 1.5, None, -1, float("inf"), float("nan"), b"1"])
PROVENANCE = st.sampled_from(
    [
        GOOD_PROVENANCE,
        json.dumps({"signers": ["AB"], "insecure": False, "verified_at": "t", "trusted_via": "x"}),
        json.dumps({"signers": [], "insecure": "false", "verified_at": "t"}),
        json.dumps({"signers": [], "insecure": True}),
        json.dumps({"signers": [1], "insecure": True, "verified_at": "t"}),
        GOOD_PROVENANCE + " ",
        *WRITTEN,
        WRITTEN[0].replace("true", '"true"'),
        WRITTEN[1].replace(', "trusted_via"', ', "trusted_via": "", "trusted_via"'),
        WRITTEN[0] + "\n",
        "{",
        3,
        None,
        "[" * 5000,  # red team 9: past the recursion limit
        GOOD_PROVENANCE.encode("utf-32"),
    ]
)
ROWS = st.tuples(
    KEYS,
    DIGEST,
    st.sampled_from(["example.com/a", "", 9, b"example.com/a"]),
    LABELS,
    TIMES,
    TIMES,
    SIZES,
    SIZES,
    st.sampled_from(["file", "", b"file"]),
    PROVENANCE,
)


def _outcome(decode: Any, row: tuple[Any, ...]) -> tuple[str, object]:
    try:
        return "ok", decode(row)
    except LocalStateError as exc:
        return "refused", (exc.message, exc.hint)


@given(st.lists(ROWS, max_size=12))
def test_the_decoder_agrees_with_row_on_every_row_of_a_listing(rows: list[tuple[Any, ...]]) -> None:
    decode = _decoder()
    good = (f"sha512-{DIGESTS[0][:64]}", DIGESTS[0], "n", "[]", WHEN, WHEN, 1, 2, "s")
    # a good row first, so its texts are remembered before the hostile rows that share them
    for row in [(*good, GOOD_PROVENANCE), *rows]:
        assert _outcome(decode, row) == _outcome(_row, row)


@given(st.lists(ROWS, max_size=12))
def test_the_tables_decoder_agrees_with_row_on_every_row(rows: list[tuple[Any, ...]]) -> None:
    decode = _table_decoder()
    good = (f"sha512-{DIGESTS[0][:64]}", DIGESTS[0], "n", '[["version", "1"]]', WHEN, WHEN, 1)
    for row in [(*good, 2, "s", WRITTEN[0]), *rows]:
        assert _outcome(decode, row) == _outcome(lambda r: _shown(_row(r)), row)


def test_a_hostile_row_sharing_a_good_rows_texts_is_refused_with_its_reason() -> None:
    decode, table = _decoder(), _table_decoder()
    key, digest = f"sha512-{DIGESTS[1][:64]}", DIGESTS[1]
    for good in (
        (key, digest, "n", "[]", WHEN, WHEN, 1, 2, "s", GOOD_PROVENANCE),
        (key, digest, "n", "[]", WHEN, WHEN, 1, 2, "s", WRITTEN[0]),  # the table's grammar
    ):
        assert decode(good) == _row(good)
        assert table(good) == _shown(_row(good))
        for bad in (
            (key, DIGESTS[2], *good[2:]),
            (*good[:4], "yesterday", *good[5:]),
            (*good[:6], "x", *good[7:]),
            (*good[:6], float("inf"), *good[7:]),  # SQLite's 9e999: int() overflows
            (*good[:7], float("-inf"), *good[8:]),
            (*good[:7], float("nan"), *good[8:]),
        ):
            assert _outcome(decode, bad)[0] == "refused"
            assert _outcome(decode, bad) == _outcome(_row, bad)
            assert _outcome(table, bad) == _outcome(_row, bad)


# red team 9: values of a type or range the writer never stores, each of which crashed the
# listing (an exception other than the row's refusal) or was taken
HOSTILE = [
    (6, float("inf")),  # OverflowError from int()
    (7, float("inf")),
    (3, "[" * 100_000),  # RecursionError from the JSON scanner
    (9, "[" * 100_000),
    (4, "2026-12-02T10:00:00"),  # naive: TypeError against the clock
    (5, "0001-01-01T00:00:00+23:59"),  # OverflowError in a local rendering
    (5, "9999-12-31T23:59:59-23:59"),
    (2, b"example.com/a"),  # a BLOB name or source
    (8, b"file"),
    (3, b"[]"),  # a BLOB JSON text (json.loads takes bytes)
    (6, -1),
    (3, '["ab"]'),  # unpacks into two, but no [name, value] pair: not the label a=b
    (3, "[[1, 2]]"),  # not text
    (3, '{"ab": 1}'),
]


def test_a_row_of_values_the_writer_never_stores_is_refused_by_every_decoder() -> None:
    key, digest = f"sha512-{DIGESTS[1][:64]}", DIGESTS[1]
    good = (key, digest, "n", "[]", WHEN, WHEN, 1, 2, "s", WRITTEN[0])
    for column, value in HOSTILE:
        bad = (*good[:column], value, *good[column + 1 :])
        for decode in (_decoder(), _table_decoder()):
            decode(good)  # its texts remembered first
            assert _outcome(decode, bad)[0] == "refused", (column, value)
        assert _outcome(_row, bad)[0] == "refused"


def _walked(then: datetime, now: datetime) -> str:
    """go-humanize's walk, the magnitudes in order (what ``humanize`` did before)."""
    delta = (now - then).total_seconds()
    label = "ago" if delta >= 0 else "from now"
    for below, fmt, divisor in _MAGNITUDES:
        if abs(delta) < below:
            return fmt.format(label, n=int(abs(delta) // divisor))
    raise AssertionError("the last magnitude is infinite")


NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
BOUNDS = [b for b, _, _ in _MAGNITUDES[:-1]]


@given(
    st.one_of(
        st.floats(min_value=-2e9, max_value=2e9),
        st.sampled_from(BOUNDS).flatmap(
            lambda b: st.sampled_from([b, -b, b - 1e-6, b + 1e-6, 1e-6 - b])
        ),
    )
)
def test_humanize_by_bisection_is_the_walk(seconds: float) -> None:
    then = NOW - timedelta(seconds=seconds)
    assert humanize(then, NOW) == _walked(then, NOW)


CELLS = st.text(alphabet="ab \t\x1b\x85é\u200b\n", max_size=20)


@given(st.integers(1, 6).flatmap(lambda n: st.lists(st.lists(CELLS, min_size=n, max_size=n))))
def test_the_table_built_by_columns_is_the_tabwriters(rows: list[list[str]]) -> None:
    columns = [list(col) for col in zip(*rows, strict=True)] if rows else []
    assert tab_columns(columns) == tab_text(rows)

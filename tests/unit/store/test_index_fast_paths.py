"""The listing's fast paths decide exactly what the general code decides (issue #14):
``index_key_ok`` against ``check_index_key``, the index's JSON reader against
``json.loads``, the provenance grammar against the strict decoder, and ``printable``'s
shortcut against its escaping."""

from __future__ import annotations

import hashlib
import json
import string
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustd.shared._jsonexact import loads_exact
from trustd.shared.errors import printable
from trustd.shared.store.model import (
    Provenance,
    check_index_key,
    index_key_ok,
    provenance_text_ok,
)

DIGEST = hashlib.sha512(b"x").hexdigest()
HEXISH = st.text(alphabet=string.hexdigits + "./-\n\x00é", max_size=140)


def _agrees(key: object, digest: object) -> None:
    try:
        check_index_key(key, digest)
    except ValueError:
        assert not index_key_ok(key, digest)
    else:
        assert index_key_ok(key, digest)


def test_the_key_test_takes_a_good_row_and_refuses_each_kind_of_bad_one() -> None:
    good = "sha512-" + DIGEST[:64]
    assert index_key_ok(good, DIGEST)
    for key, digest in (
        (good, DIGEST.upper()),
        (good.upper(), DIGEST),
        (good + "\n", DIGEST),
        ("sha512-" + hashlib.sha512(b"y").hexdigest()[:64], DIGEST),
        ("sha512-../../x", DIGEST),
        (good, DIGEST + "0"),
        (good, DIGEST[:-1]),
        (None, DIGEST),
        (good, None),
        (good.encode(), DIGEST),
        (good, DIGEST.encode()),
    ):
        assert not index_key_ok(key, digest)
        _agrees(key, digest)


@given(HEXISH, HEXISH)
def test_the_key_test_agrees_with_the_checked_parse(tail: str, digest: str) -> None:
    _agrees("sha512-" + tail, digest)
    _agrees("sha512-" + digest[:64], digest)
    _agrees("sha512-" + tail, DIGEST[: len(tail)] + digest)


JSONISH = st.one_of(
    st.text(alphabet='[]{}",:0123456789.eE+-truefalsnNIiy \t\n\\u', max_size=40),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids),
        max_leaves=8,
    ).map(json.dumps),
)


def _outcome(fn: object, text: str) -> tuple[str, object]:
    try:
        return "ok", fn(text)  # type: ignore[operator]
    except ValueError as exc:  # JSONDecodeError included
        return "error", type(exc).__name__


@given(JSONISH, st.sampled_from(["", " ", "\n", "x"]), st.sampled_from(["", " ", "\t"]))
def test_the_index_json_reader_decodes_exactly_what_jsonloads_exact_decodes(
    text: str, after: str, before: str
) -> None:
    doc = before + text + after
    assert repr(_outcome(loads_exact, doc)) == repr(_outcome(json.loads, doc))


def test_the_index_json_reader_refuses_what_is_not_text_as_jsonloads_exact_does() -> None:
    for value in (5, None, 1.5):
        for fn in (loads_exact, json.loads):
            try:
                fn(value)  # type: ignore[arg-type]
            except TypeError:
                continue
            raise AssertionError(f"{fn} took {value!r}")


ANY_TEXT = st.text(alphabet='ab"\\/\x00\x1f\x7f é\u2028\U0001f600', max_size=6)
PLAIN_TEXT = st.text(alphabet="abz09:+-./ ", max_size=12)  # what the writer stores unescaped
PROVENANCES = st.builds(
    Provenance,
    st.lists(ANY_TEXT, max_size=3).map(tuple),
    st.booleans(),
    ANY_TEXT,
    ANY_TEXT,
    ANY_TEXT,
    st.sampled_from(["", "simple-signing", "sigstore", 'x"']),
    ANY_TEXT,
)


@given(PROVENANCES)
def test_a_written_provenance_of_the_grammar_decodes_to_what_was_written(
    provenance: Provenance,
) -> None:
    doc = provenance.to_json()  # (without a signature format it leaves out the reference)
    text = json.dumps(doc)  # as Index.insert writes it
    if provenance_text_ok(text):
        assert Provenance.from_json(json.loads(text)) == Provenance.from_json(doc)


@given(
    st.builds(
        Provenance,
        st.lists(PLAIN_TEXT, max_size=3).map(tuple),
        st.booleans(),
        PLAIN_TEXT,
        PLAIN_TEXT,
        PLAIN_TEXT,
        st.sampled_from(["", "simple-signing", "sigstore"]),
        PLAIN_TEXT,
    )
)
def test_the_grammar_is_the_writers_for_text_that_needs_no_escape(provenance: Provenance) -> None:
    assert provenance_text_ok(json.dumps(provenance.to_json()))


@given(
    PROVENANCES, st.integers(0, 200), st.sampled_from(['"', "\\", ",", " ", "]", "}", "1", "\x01"])
)
def test_text_of_the_grammar_is_always_taken_by_the_strict_decoder(
    provenance: Provenance, at: int, char: str
) -> None:
    written = json.dumps(provenance.to_json())
    for text in (written[:at] + char + written[at:], written[:at] + written[at + 1 :]):
        if provenance_text_ok(text):
            Provenance.from_json(json.loads(text))  # raises if the grammar took a bad text


def test_the_grammar_refuses_what_is_not_a_str() -> None:
    written = json.dumps(Provenance((), True, "t").to_json())
    assert provenance_text_ok(written)
    for value in (written.encode(), None, 5, [written]):
        assert not provenance_text_ok(value)


# every Latin-1 character that is not printable: C0, DEL, C1, and U+00A0 (a space) and
# U+00AD (a format character)
_LATIN1 = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA1), 0xAD) if c != 0x09}


@given(st.text(max_size=30))
def test_printable_leaves_nothing_a_terminal_would_act_on(text: str) -> None:
    shown = printable(text)
    assert shown.replace("\t", "").isprintable()
    if text.replace("\t", "").isprintable():
        assert shown == text  # the shortcut: printable text and tabs are shown as they are


@given(st.text(alphabet=st.characters(codec="latin-1"), max_size=30))
def test_printable_escapes_c0_c1_and_del_as_hex(text: str) -> None:
    assert printable(text) == text.translate(_LATIN1)


@pytest.mark.parametrize(
    ("char", "shown"),
    [
        ("\u202e", "\\u202e"),  # right-to-left override: would reorder what root shows
        ("\u2066", "\\u2066"),  # left-to-right isolate
        ("\u200b", "\\u200b"),  # zero-width space (Cf)
        ("\u2028", "\\u2028"),  # line separator (Zl)
        ("\u2029", "\\u2029"),  # paragraph separator (Zp)
        ("\ud800", "\\ud800"),  # a lone surrogate
        ("\ue000", "\\ue000"),  # private use
        ("\U000e0001", "\\U000e0001"),  # language tag (Cf, beyond the BMP)
        ("\x1b", "\\x1b"),
    ],
)
def test_printable_escapes_format_and_separator_characters(char: str, shown: str) -> None:
    assert printable(f"name{char}gpj.exe") == f"name{shown}gpj.exe"


def _match_seconds(size: int) -> float:
    """The least of five CPU times the grammar takes to refuse a text of ``size`` characters
    that reads like it up to its end (many signers, then a broken field)."""
    text = '{"signers": [' + ", ".join(['""'] * (size // 4)) + '], "insecure": tru'
    best = float("inf")
    for _ in range(5):  # the thread's CPU time: a loaded machine's waits do not count
        start = time.thread_time()
        assert not provenance_text_ok(text)
        best = min(best, time.thread_time() - start)
    return best


def test_the_grammar_refuses_a_near_miss_in_linear_time() -> None:
    """Red team 9: a member's provenance text up to the index's 4 MiB value cap, shaped to
    make a backtracking matcher retry (a long run of signers, the text broken at its end),
    costs the grammar time in proportion to its length: 4x the text, about 4x the time
    (a quadratic matcher would take 16x). A ratio of two sizes, not a time threshold."""
    # (at the 4 MiB cap itself the ~30 bytes of match stack a character, ~120 MiB, page in:
    # memory, not the matcher, then shapes the time, so the sizes are a quarter of it)
    ratio = _match_seconds(1 << 20) / _match_seconds(1 << 18)
    assert ratio < 10, ratio

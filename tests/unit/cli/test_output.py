"""One output convention (issue #15 part 4): one --format vocabulary on every verb that has
one, typed JSON, one fingerprint spelling, words for booleans, aligned tables."""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import ConfigDirs, Keys
from trustd.cli._common import json_text, table_text, word
from trustd.cli.main import build_parser, main
from trustd.shared.errors import UserError
from trustd.shared.verify import format_fingerprint

FORMAT_VERBS = [
    ["list"],
    ["status", "0"],
    ["image", "list"],
    ["trust", "list"],
    ["attest", "verify", "b", "--ak=a", "--nonce=00"],
    ["attest", "replay", "log"],
    ["policy", "check"],
    ["policy", "explain", "example.com/app"],
    ["policy", "audit"],
]


def _parse(words: list[str]) -> argparse.Namespace:
    from trustd.cli.main import _route_subverbs  # noqa: PLC0415

    routed = _route_subverbs(words)
    return build_parser(routed[0]).parse_args(routed)


@pytest.mark.parametrize("verb", FORMAT_VERBS, ids=[" ".join(v[:2]) for v in FORMAT_VERBS])
@pytest.mark.parametrize(
    ("given", "read"),
    [("table", "table"), ("json", "json"), ("json-pretty", "json-pretty"), ("text", "table")],
)
def test_every_verb_reads_the_same_format_words(verb: list[str], given: str, read: str) -> None:
    assert _parse([*verb, f"--format={given}"]).format == read
    assert _parse(verb).format == "table"


@pytest.mark.parametrize("verb", FORMAT_VERBS, ids=[" ".join(v[:2]) for v in FORMAT_VERBS])
def test_an_unknown_format_names_the_vocabulary(verb: list[str]) -> None:
    with pytest.raises(UserError) as err:
        _parse([*verb, "--format=yaml"])
    assert "table, json, json-pretty" in err.value.hint


def test_only_audit_adds_report_formats() -> None:
    assert _parse(["policy", "audit", "--format=sarif"]).format == "sarif"
    with pytest.raises(UserError):
        _parse(["policy", "check", "--format=sarif"])


def test_json_is_one_line_and_json_pretty_indents_with_typed_values() -> None:
    when = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
    doc = {"size": 1996800, "ok": True, "when": when, "path": Path("/x"), "ids": ("a", "b")}
    compact = json_text(doc, "json")
    assert "\n" not in compact
    assert json.loads(compact) == {
        "size": 1996800,
        "ok": True,
        "when": "2026-12-01T22:00:00+00:00",
        "path": "/x",
        "ids": ["a", "b"],
    }
    assert json.loads(json_text(doc, "json-pretty")) == json.loads(compact)
    assert "\n\t" in json_text(doc, "json-pretty")  # rkt's MarshalIndent(v, "", "\t")


def test_one_fingerprint_spelling() -> None:
    grouped = "1f5c 2e3d 4a5b 6c7d 8e9f  0a1b 2c3d 4e5f 6a7b 8c9d"
    assert format_fingerprint(grouped) == "1F5C2E3D4A5B6C7D8E9F0A1B2C3D4E5F6A7B8C9D"
    assert format_fingerprint(grouped.replace(" ", "").upper()) == format_fingerprint(grouped)


def test_booleans_are_words_and_tables_align() -> None:
    assert [word(True), word(False), word(None)] == ["yes", "no", "unknown"]
    text = table_text([["a", "long-value", "x"], ["longer-key", "v", "y"]], ["K", "V", "Z"])
    starts = {line.rindex(cell) for line, cell in zip(text.splitlines(), "Zxy", strict=True)}
    assert len(starts) == 1


def test_policy_explain_prints_words_not_python_reprs(
    config_dirs: ConfigDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*config_dirs.flags(), "policy", "explain", "example.com/app"]) == 0
    out = capsys.readouterr().out
    assert not re.search(r"\b(True|False|None)\b", out), out
    assert re.search(r"keystore keys: (yes|no)", out)


def test_trust_list_json_spells_fingerprints_once(
    config_dirs: ConfigDirs, keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "good.asc"
    key.write_bytes(keys.public(keys.good))
    flags = config_dirs.flags()
    assert main([*flags, "trust", "--root", "--skip-fingerprint-review", str(key)]) == 0
    capsys.readouterr()
    assert main([*flags, "trust", "list", "--format=json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["fingerprint"] == keys.good.upper() and re.fullmatch(
        "[0-9A-F]{40}", record["fingerprint"]
    )
    assert main([*flags, "trust", "list"]) == 0
    assert keys.good.upper() in capsys.readouterr().out

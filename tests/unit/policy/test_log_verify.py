"""``rkt policy log verify`` names the first broken or missing link of each decision log."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import ConfigDirs
from trustd.cli.main import main
from trustd.shared.policy.log import (
    DecisionLogError,
    append,
    log_path,
    root_log_path,
    verify_chain,
)
from trustd.shared.policy.log_verify import check_log


def _log(path: Path, n: int) -> list[bytes]:
    for i in range(n):
        append(
            path, {"decision": {"gate": "fetch", "image": f"example.com/a{i}", "verdict": "allow"}}
        )
    return path.read_bytes().splitlines(keepends=True)


# edit -> (the line named as the first broken link, words in the diagnosis)
EDITS: dict[str, tuple[int, str]] = {
    "rewrite": (3, "line 2 was rewritten"),
    "insert": (2, "inserted"),
    "remove": (2, "1 line(s) before line 2 are missing"),
    "remove-two": (2, "2 line(s) before line 2 are missing"),
    "swap": (1, "reordered"),
    "garbage": (3, "not a JSON object"),
    "truncate": (5, "incomplete"),
    "forge-first": (1, "the first line was forged"),
}


def _edit(lines: list[bytes], edit: str) -> list[bytes]:
    out = list(lines)
    if edit == "rewrite":
        out[1] = out[1].replace(b"example.com/a1", b"example.com/ev")
    elif edit == "insert":
        out.insert(1, out[0])
    elif edit == "remove":
        del out[1]
    elif edit == "remove-two":
        del out[1:3]
    elif edit == "swap":
        out[0], out[1] = out[1], out[0]
    elif edit == "garbage":
        out[2] = b"not json\n"
    elif edit == "truncate":
        out[-1] = out[-1][:-5]
    elif edit == "forge-first":
        record = json.loads(out[0])
        record["prev"] = "f" * 64
        out[0] = json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    return out


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_first_broken_link_is_named(tmp_path: Path, edit: str) -> None:
    path = log_path(tmp_path)
    lines = _log(path, 5)
    path.write_bytes(b"".join(_edit(lines, edit)))
    check = check_log(path, "fetch log")
    line, words = EDITS[edit]
    assert check.state == "broken"
    assert check.broken_line == line, check.problem
    assert words in check.problem
    assert f"{path}:{line}: BROKEN" in check.describe()
    with pytest.raises(DecisionLogError):  # the log's own verifier agrees it is broken
        verify_chain(path)


def test_intact_log_is_ok_with_its_head(tmp_path: Path) -> None:
    path = log_path(tmp_path)
    _log(path, 3)
    check = check_log(path, "fetch log")
    assert (check.state, check.lines, check.broken_line) == ("ok", 3, None)
    assert check.head == verify_chain(path)
    assert "fetch example.com/a2: allow" in check.describe()
    assert check_log(tmp_path / "nope.jsonl", "x").state == "absent"


def test_a_symlinked_log_is_not_followed(tmp_path: Path) -> None:
    real = tmp_path / "real.jsonl"
    _log(real, 1)
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    assert check_log(link, "x").state == "unreadable"


def _rkt(dirs: ConfigDirs, *args: str) -> int:
    return main([*dirs.flags(), *args])


def test_cli_verifies_both_logs_and_exits_254_on_a_break(
    config_dirs: ConfigDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    group = log_path(config_dirs.data)
    root = root_log_path(config_dirs.data)
    _log(group, 2)
    root_lines = _log(root, 3)
    assert _rkt(config_dirs, "policy", "log", "verify") == 0
    out = capsys.readouterr().out
    assert f"fetch log (group rkt) {group}: ok, 2 line(s)" in out
    if os.geteuid() == 0:
        assert f"run log (root) {root}: ok, 3 line(s)" in out
    else:
        assert "readable by root only" in out
    root.write_bytes(b"".join(_edit(root_lines, "remove")))
    if os.geteuid() != 0:
        return
    assert _rkt(config_dirs, "policy", "log", "verify") == 254
    captured = capsys.readouterr()
    assert f"{root}:2: BROKEN" in captured.out
    assert f"decision log {root}:2:" in captured.err
    assert _rkt(config_dirs, "policy", "log", "verify", "--format=json") == 254
    doc = json.loads(capsys.readouterr().out)
    assert [d["state"] for d in doc] == ["ok", "broken"]
    assert doc[1]["broken_line"] == 2

"""The decision log is a hash chain: a rewritten, inserted or removed line is detected."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest

from trustd.shared.policy.log import (
    GENESIS,
    DecisionLogError,
    append,
    append_decision,
    append_fd,
    chain_head,
    chain_head_fd,
    log_path,
    verify_chain,
)


def _log(tmp_path: Path, n: int) -> tuple[Path, list[str]]:
    path = log_path(tmp_path)
    heads = [append(path, {"decision": {"n": i}}) for i in range(n)]
    return path, heads


def test_chain_links_every_line_to_the_one_before(tmp_path: Path) -> None:
    path, heads = _log(tmp_path, 3)
    lines = path.read_bytes().splitlines()
    assert [json.loads(line)["prev"] for line in lines] == [GENESIS, heads[0], heads[1]]
    assert [json.loads(line)["seq"] for line in lines] == [0, 1, 2]
    assert heads[-1] == hashlib.sha256(lines[-1]).hexdigest()
    assert verify_chain(path) == chain_head(path) == heads[-1]
    assert verify_chain(path, expected_head=heads[-1]) == heads[-1]


def test_empty_or_missing_log_has_the_genesis_head(tmp_path: Path) -> None:
    assert chain_head(tmp_path / "none.jsonl") == GENESIS


def _rewrite(path: Path, edit: str) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    if edit == "rewrite":
        lines[1] = lines[1].replace(b'"n":1', b'"n":7')
    elif edit == "remove":
        del lines[1]
    elif edit == "insert":
        lines.insert(1, lines[0])
    elif edit == "swap":
        lines[0], lines[1] = lines[1], lines[0]
    elif edit == "truncate":
        lines[-1] = lines[-1][:-5]
    elif edit == "garbage":
        lines[2] = b"not json\n"
    path.write_bytes(b"".join(lines))


@pytest.mark.parametrize("edit", ["rewrite", "remove", "insert", "swap", "truncate", "garbage"])
def test_tampering_is_detected(tmp_path: Path, edit: str) -> None:
    path, _ = _log(tmp_path, 4)
    _rewrite(path, edit)
    with pytest.raises(DecisionLogError):
        verify_chain(path)
    if edit != "truncate":  # appending to a broken chain is refused too
        with pytest.raises(DecisionLogError):
            append(path, {"decision": {}})


def test_removed_tail_is_caught_by_the_measured_head(tmp_path: Path) -> None:
    path, heads = _log(tmp_path, 3)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]))
    assert verify_chain(path) == heads[1]  # a shorter chain is still a chain...
    with pytest.raises(DecisionLogError, match="not the expected"):
        verify_chain(path, expected_head=heads[-1])  # ...but not the one that was measured


def test_concurrent_appends_keep_one_chain(tmp_path: Path) -> None:
    path = log_path(tmp_path)
    threads = [
        threading.Thread(target=lambda i=i: [append(path, {"t": i, "k": k}) for k in range(10)])
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    verify_chain(path)
    assert len(path.read_bytes().splitlines()) == 80


def test_append_decision_writes_under_data_dir(tmp_path: Path) -> None:
    from datetime import UTC, datetime  # noqa: PLC0415

    from trustd.shared.policy.decide import Decision  # noqa: PLC0415

    d = Decision(
        "fetch",
        "example.com/app",
        "",
        "deny",
        "default",
        (),
        "enforce",
        (),
        "p",
        "d",
        datetime.now(UTC),
    )
    head = append_decision(tmp_path, d)
    line = (tmp_path / "policy" / "decisions.jsonl").read_bytes().splitlines()[0]
    assert json.loads(line)["decision"]["verdict"] == "deny"
    assert head == chain_head(tmp_path / "policy" / "decisions.jsonl")


def test_caller_cannot_set_the_chain_fields(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="set by the log"):
        append(log_path(tmp_path), {"prev": GENESIS})


def _root_log(path: Path, entries: list[dict[str, object]]) -> list[str]:
    """Append through an fd as root's run gate does (``O_RDWR|O_APPEND``)."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        return [append_fd(fd, str(path), entry) for entry in entries]
    finally:
        os.close(fd)


def _head_fd(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return chain_head_fd(fd, str(path))
    finally:
        os.close(fd)


def test_appends_by_fd_link_to_the_last_line_and_make_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    big = "x" * 10_000  # lines longer than one backward read block
    heads = _root_log(path, [{"n": i, "pad": big if i % 2 else "y"} for i in range(5)])
    assert verify_chain(path) == chain_head(path) == _head_fd(path) == heads[-1]
    assert [json.loads(line)["seq"] for line in path.read_bytes().splitlines()] == list(range(5))
    single = tmp_path / "one.jsonl"
    assert _root_log(single, [{"n": 0}]) == [_head_fd(single)] == [chain_head(single)]
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    assert _head_fd(empty) == GENESIS


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (b'{"prev": "00", "seq": 1}', "incomplete"),
        (b"not json\n", "not JSON"),
        (b'{"prev": "' + b"0" * 64 + b'"}\n', "no seq and prev"),
        (b"\n", "not JSON"),
    ],
)
def test_a_broken_last_line_stops_an_append_by_fd(
    tmp_path: Path, tail: bytes, message: str
) -> None:
    path = tmp_path / "decisions.jsonl"
    _root_log(path, [{"n": 0}])
    with path.open("ab") as f:
        f.write(tail)
    with pytest.raises(DecisionLogError, match=message):
        _root_log(path, [{"n": 1}])
    with pytest.raises(DecisionLogError, match=message):
        _head_fd(path)


def test_append_and_head_by_fd_read_the_same_bytes_at_100_and_1000_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """O(1) in the log's length (issue #14): count what os.pread reads, no clock involved.
    (Both logs are longer than one 4 KiB backward read, so equal work is the claim.)"""
    read: list[int] = []
    real = os.pread

    def counting(fd: int, n: int, offset: int) -> bytes:
        data = real(fd, n, offset)
        read.append(len(data))
        return data

    work: dict[int, tuple[int, int]] = {}
    for lines in (100, 1000):
        path = tmp_path / f"{lines}.jsonl"
        _root_log(path, [{"decision": {"n": i % 10}} for i in range(lines)])
        monkeypatch.setattr(os, "pread", counting)
        read.clear()
        _root_log(path, [{"decision": {"n": 0}}])
        _head_fd(path)
        monkeypatch.setattr(os, "pread", real)
        work[lines] = (len(read), sum(read))
        verify_chain(path)
    assert work[100] == work[1000]
    assert 0 < work[1000][1] < 3 * 4096

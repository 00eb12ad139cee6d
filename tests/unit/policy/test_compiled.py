"""The compiled policy cache (issue #14): keyed by the file's digest, same policy as a full
parse, a scope decoded only when it is used (work counted at two sizes, never timed)."""

from __future__ import annotations

import pytest

from tests.unit.policy._helpers import BASE
from trustd.shared.policy import PolicyFileError, _compiled, loads_policy
from trustd.shared.policy._compiled import load_cached

WARN = """
[scopes."warn.example.com/app"]
mode = "warn"
exception = { owner = "ops", expires = 2030-01-01T00:00:00Z, reason = "migration" }
"""


class Memory:
    """A cache in memory (root's lives in ``private/``: tests/integration/test_policy_cache.py)."""

    def __init__(self) -> None:
        self.data: bytes | None = None
        self.writes = 0

    def read(self) -> bytes | None:
        return self.data

    def write(self, data: bytes) -> None:
        self.data, self.writes = data, self.writes + 1


def text(scopes: int) -> bytes:
    out = [BASE, WARN]
    for i in range(scopes):
        out.append(f'[scopes."s{i}.example.com/app"]\nrequire = {{ threshold = 2 }}\n')
    return "\n".join(out).encode()


def test_a_hit_is_the_policy_a_full_parse_gives() -> None:
    data, cache = text(20), Memory()
    first = load_cached(data, "p.toml", cache)
    second = load_cached(data, "p.toml", cache)
    full = loads_policy(data, "p.toml")
    assert cache.writes == 1
    assert isinstance(second.scopes, _compiled.CompiledScopes)
    assert first == full
    assert second == full  # every scope decoded and compared, the warn exception's date too
    assert second.digest == full.digest
    assert (
        second.scope("warn.example.com/app").exception
        == full.scopes["warn.example.com/app"].exception
    )


def test_a_changed_file_is_parsed_again_never_served_from_the_cache() -> None:
    cache = Memory()
    load_cached(text(3), "p.toml", cache)
    changed = text(3).replace(b"threshold = 2", b"threshold = 3", 1)
    policy = load_cached(changed, "p.toml", cache)
    assert policy.scopes["s0.example.com/app"].require.threshold == 3
    assert cache.writes == 2


def test_a_bad_file_is_refused_and_nothing_is_cached() -> None:
    cache = Memory()
    with pytest.raises(PolicyFileError, match="threshold"):
        load_cached(text(2).replace(b"threshold = 2", b"threshold = 99"), "p.toml", cache)
    assert cache.data is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-5],
        lambda b: b.replace(b"trustd-policy-cache 1", b"trustd-policy-cache 9"),
        lambda b: b.replace(b"\t", b" ", 1),
        lambda b: b.replace(b'"version"', b'"versio"', 1),
        lambda b: b.replace(b"\n", b"\n{", 1),
    ],
)
def test_a_cache_that_does_not_decode_is_a_miss_and_is_rewritten(damage: object) -> None:
    data, cache = text(3), Memory()
    load_cached(data, "p.toml", cache)
    assert cache.data is not None
    good = cache.data
    cache.data = damage(cache.data)  # type: ignore[operator]
    policy = load_cached(data, "p.toml", cache)
    assert policy == loads_policy(data, "p.toml")
    assert cache.data == good


def test_a_cached_table_a_full_check_would_refuse_is_refused() -> None:
    """The cache is root's; even so a scope is decoded by the same checks when used."""
    data, cache = text(2), Memory()
    load_cached(data, "p.toml", cache)
    assert cache.data is not None
    cache.data = cache.data.replace(b'"threshold":2', b'"threshold":99', 1)
    policy = load_cached(data, "p.toml", cache)
    with pytest.raises(PolicyFileError, match="compiled form"):
        policy.scopes["s0.example.com/app"]


def _decoded_on_a_hit(scopes: int, monkeypatch: pytest.MonkeyPatch) -> int:
    data, cache = text(scopes), Memory()
    load_cached(data, "p.toml", cache)
    calls = []
    real = _compiled.decode_scope

    def counting(*args: object) -> object:
        calls.append(args[0])
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(_compiled, "decode_scope", counting)
    policy = load_cached(data, "p.toml", cache)
    assert "s1.example.com/app" in policy.scopes
    assert policy.scopes["s1.example.com/app"].require.threshold == 2
    return len(calls)


def test_a_hit_decodes_the_scope_it_uses_whatever_the_policy_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _decoded_on_a_hit(10, monkeypatch) == _decoded_on_a_hit(2000, monkeypatch) == 1

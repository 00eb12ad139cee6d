"""rkt's --memory/--cpu quantities (appc/k8s grammar): table cases and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustd.privileged.isolation.cgroups import Limits, parse_cpu, parse_memory
from trustd.shared.errors import UserError

MAX_MEMORY = 1 << 62

MEMORY_OK = [
    ("1", 1),
    ("1048576", 1 << 20),
    ("64M", 64 * 10**6),  # k8s: M is decimal
    ("64Mi", 64 << 20),
    ("1G", 10**9),
    ("1Gi", 1 << 30),
    ("512Ki", 512 << 10),
    ("2k", 2000),
    ("1.5Gi", 3 << 29),
    (".5Ki", 512),
    ("1.Ki", 1024),
    ("+8Mi", 8 << 20),
    ("1e9", 10**9),
    ("5E3", 5000),
    ("4Ei", 4 << 60),
]
MEMORY_BAD = [
    "",
    " ",
    "64 M",
    "64MB",
    "64mi",
    "64K",  # k8s spells kilo "k"
    "64m",  # millibytes are not a memory size
    "-1",
    "0",
    "0Mi",
    "1.5",  # not a whole byte
    "0.1Ki",
    "Mi",
    ".",
    "1e-3",
    "5Ei",  # above 4 EiB
    "1e999",
    "0x40",
    "\uff16\uff14",  # fullwidth "64": not ASCII digits
    "64\n",
    "1" * 65,
]
CPU_OK = [("500m", 500), ("1", 1000), ("1.5", 1500), ("0.1", 100), ("1m", 1), ("2.", 2000)]
CPU_BAD = ["", "0", "0m", "-1", "0.0005", "1.5m", "500M", "1k", "1e3", "one", "1 ", "10001"]


@pytest.mark.parametrize(("text", "expected"), MEMORY_OK)
def test_memory_quantities(text: str, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", MEMORY_BAD)
def test_memory_garbage_is_a_user_error_naming_the_value(text: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_memory(text)
    assert repr(text) in str(caught.value)
    assert caught.value.hint


@pytest.mark.parametrize(("text", "expected"), CPU_OK)
def test_cpu_quantities_are_millicores(text: str, expected: int) -> None:
    assert parse_cpu(text) == expected


@pytest.mark.parametrize("text", CPU_BAD)
def test_cpu_garbage_is_a_user_error_naming_the_value(text: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_cpu(text)
    assert repr(text) in str(caught.value)


_NEAR_MISS = r"[+-]?[0-9.]{0,24}(Ki|Mi|Gi|Ei|[kMGTPEmi]|[eE][+-]?[0-9]{1,5})?"


@given(st.one_of(st.text(max_size=80), st.from_regex(_NEAR_MISS, fullmatch=True)))
def test_parse_memory_only_raises_user_error(text: str) -> None:
    try:
        value = parse_memory(text)
    except UserError:
        return
    assert 0 < value <= MAX_MEMORY


@given(st.one_of(st.text(max_size=80), st.from_regex(_NEAR_MISS, fullmatch=True)))
def test_parse_cpu_only_raises_user_error(text: str) -> None:
    try:
        value = parse_cpu(text)
    except UserError:
        return
    assert 0 < value <= 10**7


@given(st.integers(min_value=1, max_value=MAX_MEMORY))
def test_plain_byte_counts_round_trip(n: int) -> None:
    assert parse_memory(str(n)) == n


@given(st.integers(min_value=1, max_value=1 << 20), st.sampled_from(["Ki", "Mi", "Gi"]))
def test_binary_suffixes_are_powers_of_two(n: int, suffix: str) -> None:
    shift = {"Ki": 10, "Mi": 20, "Gi": 30}[suffix]
    assert parse_memory(f"{n}{suffix}") == n << shift


@given(st.integers(min_value=1, max_value=10**7))
def test_millicores_round_trip(n: int) -> None:
    assert parse_cpu(f"{n}m") == n
    if n % 1000 == 0:
        assert parse_cpu(str(n // 1000)) == n


def test_limits_parse_uses_the_flag_spellings() -> None:
    assert Limits.parse(memory="64Mi", cpu="500m", pids=10) == Limits(64 << 20, 500, 10)
    assert Limits.parse() == Limits()


@pytest.mark.parametrize(
    "kwargs",
    [{"memory": 0}, {"cpu": -1}, {"pids": 0}, {"pids": True}, {"memory": 1 << 63}],
)
def test_limits_refuse_non_positive_or_absurd_values(kwargs: dict[str, int]) -> None:
    with pytest.raises(UserError):
        Limits(**kwargs)


def test_limits_are_frozen() -> None:
    limits = Limits(memory=1)
    with pytest.raises(AttributeError):
        limits.memory = 2  # type: ignore[misc]

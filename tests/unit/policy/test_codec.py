"""The strict TOML codec: one domain error naming file, line and key path; the schema."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.policy._helpers import BASE, policy
from trustd.shared.policy import PolicyFileError, loads_policy
from trustd.shared.policy.files import shipped_default
from trustd.shared.policy.model import DEFAULT_SECCOMP
from trustd.shared.policy.schema import policy_schema

GOOD_FPR = "a" * 40
PIN = f'[scopes."a.com".require]\nfingerprints = [{{fingerprint = "{GOOD_FPR}", '

ERRORS = [
    # (policy text, key path, line or None, words in the problem)
    ("version = 1\n", ("default",), None, "missing required key"),
    ('version = 1\n[default]\nmode = "enforce"\n', (), None, None),
    ("[default]\n", ("version",), None, "missing required key"),
    ("version = 2\n[default]\n", ("version",), 1, "must be 1"),
    (BASE + "colour = 1\n", ("default", "run", "colour"), 9, "unknown key"),
    (BASE + "[default.requre]\n", ("default", "requre"), 9, "unknown key"),
    ("bogus = 1\nversion = 1\n[default]\n", ("bogus",), 1, "unknown key"),
    (
        BASE + '[scopes."a.com".run]\nflavours = []\n',
        ("scopes", "a.com", "run", "flavours"),
        10,
        "unknown key",
    ),
    (BASE + '[scopes."A.com"]\n', ("scopes", "A.com"), 9, "unreachable scope"),
    (BASE + '[scopes."a.com/*"]\n', ("scopes", "a.com/*"), 9, "globs"),
    (BASE + '[scopes."a.com/"]\n', ("scopes", "a.com/"), 9, "unreachable"),
    (BASE + '[scopes."*.a.com/x"]\n', ("scopes", "*.a.com/x"), 9, "host suffix"),
    (BASE + '[scopes."a.com"]\nmode = "warn"\n', ("scopes", "a.com", "exception"), 9, "owner"),
    (BASE + '[scopes."a.com"]\nmode = "audit"\n', ("scopes", "a.com", "mode"), 10, "one of"),
    (
        BASE + '[scopes."a.com".require]\nthreshold = 0\n',
        ("scopes", "a.com", "require", "threshold"),
        10,
        "between",
    ),
    (
        BASE + '[scopes."a.com".require]\nthreshold = "2"\n',
        ("scopes", "a.com", "require", "threshold"),
        10,
        "integer",
    ),
    (
        BASE + '[scopes."a.com".require]\nthreshold = true\n',
        ("scopes", "a.com", "require", "threshold"),
        10,
        "integer",
    ),
    (
        BASE + '[scopes."a.com".require]\nfingerprints = [{fingerprint = "XYZ"}]\n',
        ("scopes", "a.com", "require", "fingerprints", "0", "fingerprint"),
        10,
        "40-hex",
    ),
    (
        BASE + PIN + "not_after = 2026-01-01}]\n",
        ("scopes", "a.com", "require", "fingerprints", "0", "not_after"),
        10,
        "date-time",
    ),
    (
        BASE + PIN + "not_after = 2026-01-01T00:00:00}]\n",
        ("scopes", "a.com", "require", "fingerprints", "0", "not_after"),
        10,
        "time zone",
    ),
    (
        BASE + '[scopes."a.com".require]\nkeystore = false\n',
        ("scopes", "a.com", "require"),
        9,
        "fingerprints",
    ),
    (
        BASE + '[scopes."a.com".run]\ncapabilities = ["CAP_GODMODE"]\n',
        ("scopes", "a.com", "run", "capabilities"),
        10,
        "CAP_GODMODE",
    ),
    (
        BASE + '[scopes."a.com".run]\nseccomp = []\n',
        ("scopes", "a.com", "run", "seccomp"),
        10,
        "at least one",
    ),
    (
        BASE + '[scopes."a.com".run]\nseccomp = ["Bad Name"]\n',
        ("scopes", "a.com", "run", "seccomp"),
        10,
        "not a profile",
    ),
    (
        BASE + '[scopes."a.com".run]\ninsecure_options = ["everything"]\n',
        ("scopes", "a.com", "run", "insecure_options", "0"),
        10,
        "one of",
    ),
    (
        BASE + '[scopes."a.com".run]\nflavors = "container"\n',
        ("scopes", "a.com", "run", "flavors"),
        10,
        "array",
    ),
    (BASE + "scopes = 3\n", ("default", "run", "scopes"), 9, "unknown key"),
]


@pytest.mark.parametrize(("text", "path", "line", "words"), ERRORS)
def test_every_problem_is_one_domain_error_with_the_key_path(
    text: str, path: tuple[str, ...], line: int | None, words: str | None
) -> None:
    if words is None:
        policy(text)  # a minimal policy is valid: everything else has strict built-ins
        return
    with pytest.raises(PolicyFileError) as err:
        policy(text, "/etc/rkt/policy.toml")
    assert err.value.key_path == path
    assert err.value.line == line
    assert words in err.value.problem
    assert err.value.message.startswith("policy /etc/rkt/policy.toml")
    assert "rkt policy check" in err.value.hint


def test_toml_syntax_error_names_the_line() -> None:
    with pytest.raises(PolicyFileError) as err:
        policy("version = 1\n[default\n")
    assert err.value.line == 2


def test_scopes_inherit_from_default_only() -> None:
    p = policy(
        BASE
        + '[scopes."a.com".require]\nthreshold = 2\n'
        + '[scopes."a.com/b".run]\nflavors = ["fly"]\n'
    )
    child = p.scopes["a.com/b"]
    assert child.require.threshold == 1  # from [default], not from "a.com"
    assert child.run.flavors == ("fly",)
    assert child.run.selinux == "off"  # from [default]
    assert p.default.run.seccomp == DEFAULT_SECCOMP  # built-in


def test_warn_exception_parses_with_owner_and_expiry() -> None:
    p = policy(
        BASE
        + '[scopes."a.com"]\nmode = "warn"\n'
        + 'exception = { owner = "ops@example.com", expires = 2026-02-01T00:00:00Z }\n'
    )
    exc = p.scopes["a.com"].exception
    assert exc is not None
    assert exc.owner == "ops@example.com"
    assert exc.expires == datetime(2026, 2, 1, tzinfo=UTC)


def test_shipped_default_loads_and_is_strict() -> None:
    p = loads_policy(shipped_default().read_bytes(), "default.toml")
    assert p.default.require.type == "signed"
    assert p.default.run.flavors == ("container",)
    assert p.default.run.seccomp == ("rkt-default",)
    assert p.default.measure == "required"
    assert p.digest.startswith("sha256-")


def test_schema_is_json_and_closed() -> None:
    schema = json.loads(json.dumps(policy_schema()))
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["version", "default"]
    scope = schema["$defs"]["Scope"]
    assert scope["additionalProperties"] is False
    assert set(scope["properties"]) == {"require", "run", "measure", "mode", "exception"}
    assert schema["$defs"]["RunRules"]["properties"]["selinux"]["enum"] == [
        "enforce",
        "permissive",
        "off",
    ]
    pinned = schema["$defs"]["PinnedKey"]
    assert pinned["required"] == ["fingerprint"]
    assert pinned["properties"]["not_after"]["format"] == "date-time"


_toml_scalars: st.SearchStrategy[object] = st.one_of(
    st.integers(), st.booleans(), st.text(max_size=8), st.just([]), st.just({})
)
_toml_values = st.recursive(
    _toml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_the_domain_error(data: bytes) -> None:
    with contextlib.suppress(PolicyFileError):
        loads_policy(data, "fuzz.toml")


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["version", "default", "scopes", "seccomp_profiles", "x"]),
        _toml_values,
        max_size=4,
    )
)
def test_arbitrary_documents_only_raise_the_domain_error(doc: dict[str, object]) -> None:
    text = "\n".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in doc.items())
    with contextlib.suppress(PolicyFileError):
        loads_policy(text.encode(), "fuzz.toml")


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


# What JSON Schema's "date-time" (RFC 3339 section 5.6) admits, and so what a quoted
# expires/not_before/not_after must decode to; TOML's own date-times keep working.
DATE_TIMES: list[tuple[str, datetime | None]] = [
    ('"2030-01-01T00:00:00Z"', datetime(2030, 1, 1, tzinfo=UTC)),
    ('"2030-01-01t00:00:00z"', datetime(2030, 1, 1, tzinfo=UTC)),
    ('"2030-01-01T02:00:00+02:00"', datetime(2030, 1, 1, tzinfo=UTC)),
    ('"2030-01-01T00:00:00.5Z"', datetime(2030, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)),
    ("2030-01-01T00:00:00Z", datetime(2030, 1, 1, tzinfo=UTC)),  # TOML offset date-time
    ('"2030-01-01"', None),  # a full-date is not a date-time
    ('"2030-01-01T00:00:00"', None),  # no offset
    ('"20300101T000000Z"', None),  # ISO 8601 basic format is not RFC 3339
    ('"2030-01-01 00:00:00Z"', None),
    ('"2030-W01-1T00:00:00Z"', None),
    ('"2030-13-01T00:00:00Z"', None),  # matches the pattern, is no date
    ('"soon"', None),
]


@pytest.mark.parametrize(("value", "expected"), DATE_TIMES)
def test_quoted_rfc3339_date_times_decode_as_the_schema_says(
    value: str, expected: datetime | None
) -> None:
    schema = policy_schema()["$defs"]["WarnException"]["properties"]["expires"]
    assert (schema["type"], schema["format"]) == ("string", "date-time")
    text = (
        BASE
        + '[scopes."a.com"]\nmode = "warn"\n'
        + f'exception = {{ owner = "ops@example.com", expires = {value} }}\n'
    )
    if expected is None:
        with pytest.raises(PolicyFileError) as err:
            policy(text)
        assert err.value.key_path == ("scopes", "a.com", "exception", "expires")
        return
    exc = policy(text).scopes["a.com"].exception
    assert exc is not None
    assert exc.expires == expected

"""The one strict codec for trustd's own files, and every file that uses it: an unknown,
missing or mistyped field is one DecodeError naming the file and the field path."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustd.privileged.executor._measure import MeasureConfig, load_config
from trustd.privileged.executor.plan import PodPlan
from trustd.privileged.treestore.marker import RenderMarker, decode_marker, encode_marker
from trustd.shared.attest.policy import VerifierPolicy
from trustd.shared.codec import DecodeError, decode_json, encode
from trustd.shared.errors import LocalStateError
from trustd.shared.store.model import Provenance


@dataclass(frozen=True, slots=True)
class Inner:
    n: int
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Outer:
    name: str
    kind: Literal["a", "b"]
    items: tuple[Inner, ...]
    pair: tuple[int, str] = (0, "")
    when: datetime | None = None
    extra: dict[str, int] = field(default_factory=dict)
    ratio: float = 1.0


GOOD: dict[str, Any] = {"name": "x", "kind": "a", "items": [{"n": 1, "tags": ["t"]}]}


@pytest.mark.parametrize(
    ("change", "path", "problem"),
    [
        ({"bogus": 1}, "bogus", "unknown field (known: extra, items, kind, name"),
        ({"name": ...}, "name", "missing required field"),
        ({"name": 3}, "name", "expected a string, not an integer"),
        ({"kind": "c"}, "kind", "'c' is not one of 'a', 'b'"),
        ({"items": "abc"}, "items", "expected an array, not a string"),
        ({"items": [{"n": True}]}, "items.0.n", "expected an integer, not a boolean"),
        ({"items": [{"n": 1}, {"n": 2, "tags": ["ok", 7]}]}, "items.1.tags.1", "not an integer"),
        ({"items": [{"n": 1, "x": 0}]}, "items.0.x", "unknown field"),
        ({"pair": [1]}, "pair", "expected 2 items, not 1"),
        ({"pair": ["1", "s"]}, "pair.0", "expected an integer, not a string"),
        ({"when": "yesterday"}, "when", "is not an ISO 8601 date-time"),
        ({"extra": {"k": "v"}}, "extra.k", "expected an integer, not a string"),
        ({"extra": []}, "extra", "expected a table, not an array"),
        ({"ratio": "1"}, "ratio", "expected a number, not a string"),
    ],
)
def test_every_refusal_names_the_file_and_the_field(
    change: dict[str, Any], path: str, problem: str
) -> None:
    doc = {k: v for k, v in {**GOOD, **change}.items() if v is not ...}
    with pytest.raises(DecodeError) as info:
        decode_json(json.dumps(doc), Outer, "file.json")
    assert info.value.message.startswith(f"file.json: {path}: ")
    assert problem in info.value.problem
    assert isinstance(info.value, LocalStateError) and info.value.hint


def test_a_good_document_round_trips() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    value = Outer("x", "b", (Inner(1, ("t",)),), (2, "s"), when, {"k": 1}, 0.5)
    assert decode_json(json.dumps(encode(value)), Outer, "f") == value
    assert decode_json(json.dumps(GOOD), Outer, "f").items == (Inner(1, ("t",)),)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"[]", "expected a table, not an array"),
        (b" " * (5 << 20), "larger than"),
    ],
)
def test_syntax_depth_and_size_are_the_same_error(data: bytes, problem: str) -> None:
    with pytest.raises(DecodeError, match=problem):
        decode_json(data, Outer, "file.json")


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
    )
)
def test_any_json_value_decodes_or_is_a_decode_error(doc: Any) -> None:
    try:
        value = decode_json(json.dumps(doc), Outer, "f")
    except DecodeError as exc:  # the only failure there is
        assert exc.source == "f"
    else:
        assert isinstance(value, Outer)


def test_plan_json_refuses_an_unknown_or_mistyped_field() -> None:
    plan = json.loads(_minimal_plan().to_json())
    assert PodPlan.from_json(json.dumps(plan)) == _minimal_plan()
    with pytest.raises(DecodeError, match=r"plan.json: apps.0.tree: expected a string"):
        PodPlan.from_json(json.dumps({**plan, "apps": [{**plan["apps"][0], "tree": 1}]}))
    with pytest.raises(DecodeError, match=r"plan.json: masked_pahts: unknown field"):
        PodPlan.from_json(json.dumps({**plan, "masked_pahts": False}))
    with pytest.raises(DecodeError, match=r"plan.json: flavor: 'kvm' is not one of"):
        PodPlan.from_json(json.dumps({**plan, "flavor": "kvm"}))


def _minimal_plan() -> PodPlan:
    from trustd.privileged.executor.plan import AppPlan  # noqa: PLC0415

    app = AppPlan(
        name="a", image_key="sha512-" + "0" * 64, image_name="example.com/a", tree="/t",
        signers=(), insecure_image=True, exec=("/bin/true",), env=(("A", "1"),), uid=0, gid=0,
        user="0", group="0", working_dir="/", readonly_rootfs=False, capabilities=None,
        seccomp=None, memory=None, cpu_millis=None, image_version="1.0",
    )  # fmt: skip
    return PodPlan("u", "container", "default", "h", (app,), (), (), True)


def test_measure_json_is_strict(tmp_path: Path) -> None:
    system, local = tmp_path / "sys", tmp_path / "local"
    system.mkdir()
    local.mkdir()
    assert load_config(system, local) == MeasureConfig()
    (local / "measure.json").write_text('{"mode": "best-effort", "pcr": 16}')
    assert load_config(system, local) == MeasureConfig("best-effort", 16)
    for text, problem in (
        ('{"mode": "require"}', "mode: 'require' is not one of"),
        ('{"pcr": "23"}', "pcr: expected an integer, not a string"),
        ('{"pcr": 24}', "pcr: must be a PCR number"),
        ('{"mdoe": "off"}', "mdoe: unknown field"),
    ):
        (local / "measure.json").write_text(text)
        with pytest.raises(DecodeError, match=problem) as info:
            load_config(system, local)
        assert str(local / "measure.json") in info.value.message


def test_the_verifier_policy_refuses_a_string_where_a_list_belongs(tmp_path: Path) -> None:
    path = tmp_path / "verifier.toml"
    path.write_text('flavors = "container"\n')  # once passed by substring match
    with pytest.raises(DecodeError, match=r"flavors: expected an array, not a string"):
        VerifierPolicy.load(path)
    path.write_text("signerz = []\n")
    with pytest.raises(DecodeError, match=r"signerz: unknown key"):
        VerifierPolicy.load(path)
    path.write_text('require_seccomp = "yes"\n')
    with pytest.raises(DecodeError, match=r"require_seccomp: expected a boolean"):
        VerifierPolicy.load(path)
    path.write_text(f'signers = ["{"AB" * 20}"]\nflavors = ["fly"]\n')
    assert VerifierPolicy.load(path) == VerifierPolicy(signers=("ab" * 20,), flavors=("fly",))


def test_the_render_marker_is_strict() -> None:
    marker = RenderMarker.now("a" * 128, ("b" * 40,), insecure=False)
    assert decode_marker(encode_marker(marker), "tree/rendered") == marker
    doc = json.loads(encode_marker(marker))
    for change, problem in (
        ({"insecure": "false"}, "insecure: expected a boolean"),
        ({"digest": "a" * 127}, "digest: must be the sha512"),
        ({"signers": "b" * 40}, "signers: expected an array"),
        ({"insecure": True}, "either signed .signers. or insecure"),
        ({"rendered_at": "2026-01-01T00:00:00"}, "rendered_at: must carry a time zone"),
        ({"extra": 1}, "extra: unknown field"),
    ):
        with pytest.raises(DecodeError, match=problem) as info:
            decode_marker(json.dumps({**doc, **change}).encode(), "tree/rendered")
        assert info.value.source == "tree/rendered"


def test_provenance_in_the_index_is_strict() -> None:
    good = Provenance(("c" * 40,), False, "2026-01-01T00:00:00+00:00")
    assert Provenance.from_json(good.to_json()) == good
    old = {"signers": [], "insecure": True, "verified_at": "t"}  # before trusted_via existed
    assert Provenance.from_json(old) == Provenance((), True, "t")
    with pytest.raises(DecodeError, match=r"provenance: insecure: expected a boolean"):
        Provenance.from_json({**good.to_json(), "insecure": "false"})
    with pytest.raises(DecodeError, match=r"provenance: signerz: unknown field"):
        Provenance.decode(json.dumps({**good.to_json(), "signerz": []}))

"""Image manifests: upstream vectors parse and round-trip, every fault names its field path."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustd.shared.appc import ManifestError, parse_image_manifest
from trustd.shared.errors import RemoteLiedError

VECTORS = Path(__file__).parents[2] / "vectors"
UPSTREAM = [
    "appc-spec/examples/image.json",
    "appc-spec/ace/image_manifest_main.json.in",
    "appc-spec/ace/image_manifest_sidekick.json.in",
    "rkt/tests/image/manifest",
    "rkt/tests/empty-image/manifest",
    "rkt/tests/stub-stage1/manifest",
]


def vector(rel: str) -> bytes:
    data = (VECTORS / rel).read_bytes()
    return data.replace(b"@ACI_OS@", b"linux").replace(b"@ACI_ARCH@", b"amd64")


def parse(doc: Any) -> Any:
    return parse_image_manifest(json.dumps(doc).encode(), source="test")


@pytest.mark.parametrize("rel", UPSTREAM)
def test_upstream_manifests_parse_and_round_trip(rel: str) -> None:
    data = vector(rel)
    manifest = parse_image_manifest(data, source=rel)
    assert json.loads(manifest.to_json()) == json.loads(data)
    assert parse_image_manifest(manifest.to_json().encode(), source="again") == manifest


def test_appc_example_fields() -> None:
    m = parse_image_manifest(vector("appc-spec/examples/image.json"), source="image.json")
    assert str(m.name) == "example.com/reduce-worker"
    assert (m.label("version"), m.label("os"), m.label("arch")) == ("1.0.0", "linux", "amd64")
    assert m.label("missing") is None
    assert m.annotation("homepage") == "https://example.com"
    assert m.app is not None and m.app.exec == ("/usr/bin/reduce-worker", "--quiet")
    assert [h.name for h in m.app.event_handlers or ()] == ["pre-start", "post-stop"]
    isolators = {str(i.name): i.value for i in m.app.isolators or ()}
    assert isolators["os/linux/no-new-privileges"] is True
    assert isolators["resource/memory"] == {"limit": "1G"}
    assert m.app.ports is not None and m.app.ports[0].port == 4000
    assert m.dependencies is not None and m.dependencies[0].image_id == "sha512-..."


def test_unfilled_rkt_placeholders_are_refused() -> None:
    raw = (VECTORS / "rkt/tests/empty-image/manifest").read_bytes()
    with pytest.raises(
        ManifestError, match=r'bad os "@ACI_OS@" \(must be one of: \[darwin freebsd linux\]\)'
    ):
        parse_image_manifest(raw, source="empty-image")


def test_unknown_fields_survive_at_every_level() -> None:
    doc = json.loads(vector("appc-spec/examples/image.json"))
    doc["x-top"] = {"nested": [1, 2.5, None, "s"]}
    doc["app"]["x-app"] = True
    doc["app"]["criAnnotations"] = {"a": "b"}
    doc["labels"][0]["x-label"] = "kept"
    doc["app"]["mountPoints"][0]["x-mp"] = 7
    doc["app"]["isolators"][0]["x-iso"] = []
    doc["dependencies"][0]["x-dep"] = {}
    m = parse(doc)
    again = json.loads(m.to_json())
    assert again == doc
    assert list(again)[-1] == "x-top"  # known keys first, then extras in document order


def test_manifest_error_is_remote_lied_with_hint() -> None:
    with pytest.raises(ManifestError) as info:
        parse_image_manifest(b"{", source="registry.example/app.aci")
    err = info.value
    assert isinstance(err, RemoteLiedError)
    assert "registry.example/app.aci" in str(err)
    assert err.hint


def base() -> dict[str, Any]:
    return {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": "example.com/app",
        "labels": [{"name": "os", "value": "linux"}, {"name": "arch", "value": "amd64"}],
        "app": {
            "exec": ["/bin/app"],
            "user": "0",
            "group": "0",
            "mountPoints": [
                {"name": "a", "path": "/a"},
                {"name": "b", "path": "/b"},
                {"name": "c", "path": "/c"},
            ],
            "ports": [{"name": "http", "protocol": "tcp", "port": 80}],
            "environment": [{"name": "PATH", "value": "/bin"}],
            "isolators": [{"name": "resource/cpu", "value": {"limit": "1"}}],
            "eventHandlers": [{"name": "pre-start", "exec": ["/bin/pre"]}],
        },
        "dependencies": [{"imageName": "example.com/base"}],
        "annotations": [{"name": "created", "value": "2014-10-27T19:32:27.67021798Z"}],
    }


def test_base_document_is_valid() -> None:
    assert str(parse(base()).name) == "example.com/app"


def _set(path: str, value: Any) -> Any:
    """A mutation of base(): set (or delete, with ...) the value at a dotted/indexed path."""

    def apply(doc: dict[str, Any]) -> None:
        keys = [
            int(k) if k.isdigit() else k for k in path.replace("[", ".").replace("]", "").split(".")
        ]
        target: Any = doc
        for key in keys[:-1]:
            target = target[key]
        if value is ...:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value

    return apply


MALFORMED = [
    ("acKind", "PodManifest", "acKind"),
    ("acKind", ..., "acKind"),
    ("acVersion", "0.8", "acVersion"),
    ("acVersion", "0.0.0", "acVersion"),
    ("name", "Example.com/App", "name"),
    ("name", 42, "name"),
    ("labels[0].name", "name", "labels[0]"),
    ("labels[1]", {"name": "os", "value": "linux"}, "labels[1]"),
    ("labels[0].value", "plan9", "labels"),
    ("labels[1].value", "sparc", "labels"),
    ("labels[0].value", ..., "labels[0].value"),
    ("app.exec[0]", "bin/app", "app.exec[0]"),
    ("app.exec", "/bin/app", "app.exec"),
    ("app.user", ..., "app.user"),
    ("app.group", "", "app.group"),
    ("app.workingDirectory", "relative/dir", "app.workingDirectory"),
    ("app.supplementaryGIDs", [1, -1], "app.supplementaryGIDs[1]"),
    ("app.supplementaryGIDs", [True], "app.supplementaryGIDs[0]"),
    ("app.mountPoints[2].name", "Bad_Name", "app.mountPoints[2].name"),
    ("app.mountPoints[1].path", ..., "app.mountPoints[1].path"),
    ("app.mountPoints[0].readOnly", "yes", "app.mountPoints[0].readOnly"),
    ("app.ports[0].port", 0, "app.ports[0].port"),
    ("app.ports[0].port", 65536, "app.ports[0].port"),
    ("app.ports[0].port", 80.5, "app.ports[0].port"),
    ("app.ports[0].count", 65500, "app.ports[0].count"),
    ("app.ports[0].protocol", ..., "app.ports[0].protocol"),
    ("app.environment[0].name", "0PATH", "app.environment[0].name"),
    ("app.environment[0].name", "A|B", "app.environment[0].name"),
    (
        "app.environment",
        [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}],
        "app.environment[1].name",
    ),
    ("app.isolators[0].value", ..., "app.isolators[0].value"),
    ("app.isolators[0].name", "Resource/CPU", "app.isolators[0].name"),
    ("app.eventHandlers[0].name", "pre-stop", "app.eventHandlers[0].name"),
    ("app.eventHandlers[0].exec", [], "app.eventHandlers[0].exec"),
    ("app.eventHandlers", [{"name": "pre-start", "exec": ["/a"]}] * 2, "app.eventHandlers[1].name"),
    ("app.userLabels", {"a": 1}, "app.userLabels.a"),
    ("app", [], "app"),
    ("dependencies[0].imageName", ..., "dependencies[0].imageName"),
    ("dependencies[0].imageID", "sha256-abc", "dependencies[0].imageID"),
    ("dependencies[0].size", -1, "dependencies[0].size"),
    ("pathWhitelist", ["/a", 3], "pathWhitelist[1]"),
    ("annotations[0].value", "yesterday", "annotations[0].value"),
    ("annotations", [{"name": "homepage", "value": "example.com"}], "annotations[0].value"),
    (
        "annotations",
        [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}],
        "annotations[1].name",
    ),
]


@pytest.mark.parametrize(
    ("path", "value", "field"), MALFORMED, ids=[f"{p}={v!r}" for p, v, _ in MALFORMED]
)
def test_malformed_fields_name_their_path(path: str, value: Any, field: str) -> None:
    doc = base()
    _set(path, value)(doc)
    with pytest.raises(ManifestError) as info:
        parse(doc)
    assert info.value.field == field
    assert f"field {field}:" in str(info.value)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "not JSON"),
        (b"[]", "expected an object"),
        (b"\xef\xbb\xbf{}", "byte order mark"),
        (b'{"acKind": "\xff"}', "not UTF-8"),
        ('{"a": 1}'.encode("utf-16"), "not UTF-8"),
        (b'{"acKind": "ImageManifest", "acKind": "ImageManifest"}', "twice"),
        (b'{"x": NaN}', "not JSON"),
        (b'{"x": 1e999}', "64-bit float"),
        (b'{"x": "\\u0000"}', "NUL"),
        (b'{"x": "\\ud800"}', "surrogate"),
        (b'{"x": ' + b"[" * 100 + b"]" * 100 + b"}", "nested deeper"),
        (b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested deeper"),
        (b'{"x": ' + b"9" * 5000 + b"}", "out of range"),
        (b" " * (1024 * 1024 + 1), "bytes \\(at most"),
    ],
)
def test_hostile_documents_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(ManifestError, match=why):
        parse_image_manifest(data, source="t")


def test_model_is_frozen_and_hashable() -> None:
    m = parse(base())
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.name = m.name
    assert hash(m) == hash(parse(base()))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
manifest_keys = st.sampled_from(
    [
        "acKind",
        "acVersion",
        "name",
        "labels",
        "app",
        "dependencies",
        "pathWhitelist",
        "annotations",
        "exec",
        "user",
        "group",
        "ports",
        "mountPoints",
        "value",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(manifest_keys, json_values, max_size=8),
    st.booleans(),
)
def test_arbitrary_json_only_ever_raises_manifest_error(doc: dict[str, Any], graft: bool) -> None:
    if graft:  # mutate a valid document so the walk gets deep before it fails
        doc = {**base(), **doc}
    try:
        m = parse_image_manifest(json.dumps(doc).encode(), source="fuzz")
    except ManifestError:
        return
    assert parse_image_manifest(m.to_json().encode(), source="again") == m


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_ever_raise_manifest_error(data: bytes) -> None:
    with contextlib.suppress(ManifestError):
        parse_image_manifest(data, source="fuzz")

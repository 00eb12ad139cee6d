"""The simple-signing payload parser (containers/image's paranoid rules) and its round trip."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustd.shared.ocisig.payload import (
    SIGSTORE_TYPE,
    MalformedSignatureError,
    build_payload,
    parse_payload,
)

DIGEST = "sha256:" + "ab" * 32
REF = "127.0.0.1:5000/ns/app:v1"

# what skopeo 1.9 wrote (tests/integration/_signed.py makes the same)
SKOPEO = (
    b'{"critical":{"identity":{"docker-reference":"127.0.0.1:5123/ns/app:v1"},"image":'
    b'{"docker-manifest-digest":"sha256:b859c4a3cbfe7543f6f0626a4038fbd9ac87fa3fa1556be42d2'
    b'1f9ca194156c8"},"type":"atomic container signature"},"optional":{"creator":"atomic '
    b'5.23.1","timestamp":1796171985}}'
)


def test_skopeos_payload_parses_with_its_optional_fields_kept() -> None:
    p = parse_payload(SKOPEO)
    assert p.docker_reference == "127.0.0.1:5123/ns/app:v1"
    assert p.manifest_digest.startswith("sha256:b859c4a3")
    assert p.creator == "atomic 5.23.1" and p.timestamp == 1796171985
    assert p.optional == {"creator": "atomic 5.23.1", "timestamp": 1796171985}
    assert str(p.reference.name) == "docker://127.0.0.1:5123/ns/app"


def _doc(**changes: object) -> bytes:
    doc = json.loads(build_payload(REF, DIGEST))
    for path, value in changes.items():
        node = doc
        *parents, last = path.split("__")
        for part in parents:
            node = node[part.replace("_", "-")]
        if value is KeyError:
            del node[last.replace("_", "-")]
        else:
            node[last.replace("_", "-")] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (_doc(critical__type="cosign container image signature"), "critical.type"),
        (_doc(critical__extra=1), "unknown field 'extra'"),
        (_doc(critical__image__docker_manifest_digest="sha1:00"), "is no digest"),
        (_doc(critical__identity__docker_reference=5), "is not a string"),
        (_doc(critical__identity__docker_reference="UPPER/Case"), "docker-reference"),
        (_doc(optional=KeyError), "lacks 'optional'"),
        (_doc(optional=[]), '"optional" is not a JSON object'),
        (_doc(optional__timestamp="noon"), "timestamp"),
        (_doc(critical__identity=KeyError), "lacks 'identity'"),
        (b'{"critical": {}, "critical": {}, "optional": {}}', "appears twice"),
        (b"\xff", "is not JSON"),
        (b"[]", "is not a JSON object"),
    ],
)
def test_malformed_payloads_are_refused_naming_the_field(payload: bytes, why: str) -> None:
    with pytest.raises(MalformedSignatureError, match="malformed") as info:
        parse_payload(payload)
    assert why in info.value.message


def test_a_sigstore_payload_may_have_null_optional() -> None:
    p = parse_payload(build_payload(REF, DIGEST, "sigstore"), "sigstore")
    assert p.format == "sigstore" and p.optional == {}
    assert SIGSTORE_TYPE in build_payload(REF, DIGEST, "sigstore").decode()


_component = st.from_regex(r"[a-z0-9]{1,8}([._-][a-z0-9]{1,8}){0,2}", fullmatch=True)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)


@given(
    host=st.sampled_from(["quay.io", "127.0.0.1:5000", "localhost:1", "example.com"]),
    path=st.lists(_component, min_size=1, max_size=4),
    tag=_tag,
    hexdigest=st.from_regex(r"[a-f0-9]{64}", fullmatch=True),
    extra=st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=3),
)
def test_build_then_parse_round_trips(
    host: str, path: list[str], tag: str, hexdigest: str, extra: dict[str, object]
) -> None:
    ref = f"{host}/{'/'.join(path)}:{tag}"
    optional = {k: v for k, v in extra.items() if k not in {"creator", "timestamp"}}
    p = parse_payload(build_payload(ref, f"sha256:{hexdigest}", optional=optional))
    assert (p.docker_reference, p.manifest_digest) == (ref, f"sha256:{hexdigest}")
    assert dict(p.optional) == optional
    assert p.reference.tag == tag


@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_are_refused_as_malformed(data: bytes) -> None:
    _parses_or_is_refused(data)


def _parses_or_is_refused(data: bytes) -> None:
    """Only MalformedSignatureError escapes; what parses re-builds to an equal payload."""
    try:
        p = parse_payload(data)
    except MalformedSignatureError as exc:
        assert exc.message.startswith("the signature's payload is malformed")
    else:
        again = build_payload(p.docker_reference, p.manifest_digest, optional=p.optional)
        assert parse_payload(again) == p


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=12,
)


@given(_json)
def test_arbitrary_json_parses_or_is_refused_as_malformed(doc: object) -> None:
    _parses_or_is_refused(json.dumps({"critical": doc, "optional": {}}).encode())

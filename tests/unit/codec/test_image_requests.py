"""The image requests of the root program (image gc, rm, export): strict, full IDs only."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from trustd.shared.codec import DecodeError
from trustd.shared.errors import UserError
from trustd.shared.request import (
    VERSION,
    CollectTrees,
    Dirs,
    Envelope,
    ExportImage,
    ImageUse,
    PodReferences,
    RemoveTrees,
    Request,
    decode,
    decode_use,
    encode,
    encode_use,
)

FULL = "sha512-" + "ab" * 64


def _envelope(request: Request) -> Envelope:
    return Envelope(VERSION, "gc", Dirs("/usr/lib/rkt", "/etc/rkt", "/var/lib/rkt"), request)


@pytest.mark.parametrize(
    "request_",
    [
        PodReferences("pod-references"),
        CollectTrees("image-gc", (FULL,)),
        CollectTrees("image-gc", ()),
        RemoveTrees("image-rm-trees", (FULL,)),
        ExportImage("image-export", FULL, "/tmp/out.aci", overwrite=True),
    ],
)
def test_image_requests_round_trip(request_: Request) -> None:
    assert decode(encode(_envelope(request_))).request == request_


@pytest.mark.parametrize(
    ("request_", "field", "value", "problem"),
    [
        (RemoveTrees("image-rm-trees", (FULL,)), "images", [FULL[:39]], "not a full image ID"),
        (CollectTrees("image-gc", ()), "remaining", ["sha512-" + "../" * 40], "not a full"),
        (ExportImage("image-export", FULL, "/o"), "image", "example.com/busybox", "not a full"),
        (
            ExportImage("image-export", FULL, "/o"),
            "output",
            "relative.aci",
            "the output file must be an absolute path",
        ),
    ],
)
def test_image_requests_refuse_anything_but_full_ids_and_absolute_paths(
    request_: Request, field: str, value: object, problem: str
) -> None:
    raw = json.loads(encode(_envelope(request_)))
    raw["request"][field] = value
    with pytest.raises(UserError, match=rf"^the request to the root program: request: {problem}"):
        decode(json.dumps(raw).encode())


def test_the_pod_references_answer_is_strict() -> None:
    use = ImageUse({FULL: ("0f2c6a4e-uuid",)}, {FULL: datetime(2026, 1, 1, tzinfo=UTC)})
    assert decode_use(encode_use(use)) == use
    doc = json.loads(encode_use(use))
    for change, problem in (
        ({"references": {FULL: "one"}}, "expected an array"),
        ({"used": {FULL: "yesterday"}}, "date-time"),
        ({"extra": 1}, "unknown"),
    ):
        with pytest.raises(DecodeError, match=problem):
            decode_use(json.dumps({**doc, **change}))

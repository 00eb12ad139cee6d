"""The metadata service's endpoints, content types and HMAC identity over real HTTP."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from trustd.unprivileged.mds import MetadataService, PodMetadata

MANIFEST = {
    "acKind": "PodManifest",
    "apps": [{"name": "web", "annotations": [{"name": "role", "value": "frontend"}]}],
    "annotations": [{"name": "zone", "value": "a"}],
}
IMAGE = json.dumps(
    {"name": "example.com/web", "annotations": [{"name": "authors", "value": "me"}]}
).encode()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[MetadataService]:
    meta = PodMetadata.new(
        "1234-uuid", MANIFEST, {"web": (IMAGE, "sha512-abc")}, secrets.token_bytes(64)
    )
    svc = MetadataService(meta, port=0).start()
    yield svc
    svc.stop()


def get(url: str, data: bytes | None = None) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, data=data, timeout=5) as r:  # noqa: S310 - loopback
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


@pytest.mark.parametrize(
    ("path", "ctype", "body"),
    [
        ("pod/uuid", "text/plain; charset=us-ascii", b"1234-uuid"),
        ("apps/web/image/id", "text/plain; charset=us-ascii", b"sha512-abc"),
        ("apps/web/image/manifest", "application/json", IMAGE),
        ("pod/annotations", "application/json", b'[{"name": "zone", "value": "a"}]'),
    ],
)
def test_endpoints(service: MetadataService, path: str, ctype: str, body: bytes) -> None:
    assert get(f"{service.url}/acMetadata/v1/{path}") == (200, ctype, body)


def test_app_annotations_merge_image_and_pod(service: MetadataService) -> None:
    _, _, body = get(f"{service.url}/acMetadata/v1/apps/web/annotations")
    assert [a["name"] for a in json.loads(body)] == ["authors", "role"]


def test_without_the_token_nothing_is_served(service: MetadataService) -> None:
    base = service.url.rsplit("/", 1)[0]
    assert get(f"{base}/acMetadata/v1/pod/uuid")[0] == 404
    assert get(f"{base}/wrong-token/acMetadata/v1/pod/uuid")[0] == 404
    assert get(f"{service.url}/acMetadata/v1/apps/nope/image/id")[0] == 404


def test_hmac_sign_and_verify(service: MetadataService, tmp_path: Path) -> None:
    status, ctype, sig = get(f"{service.url}/acMetadata/v1/pod/hmac/sign", b"content=hello")
    assert status == 200 and ctype == "text/plain; charset=us-ascii"
    form = urllib.parse.urlencode(
        {"content": "hello", "uuid": "1234-uuid", "signature": sig.decode()}
    ).encode()
    assert get(f"{service.url}/acMetadata/v1/pod/hmac/verify", form)[0] == 200
    forged = form.replace(b"hello", b"hellO")
    assert get(f"{service.url}/acMetadata/v1/pod/hmac/verify", forged)[0] == 403

"""``docker://`` reference parsing: a table of what rkt/docker2aci accept and refuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from trustd.shared.errors import UserError
from trustd.unprivileged.docker import parse_docker_ref
from trustd.unprivileged.fetch import parse_image_ref

D = "sha256:" + "ab" * 32

GOOD = [
    ("docker://busybox", "registry-1.docker.io", "library/busybox", "latest", None),
    ("docker:busybox", "registry-1.docker.io", "library/busybox", "latest", None),
    ("docker://busybox:1.36", "registry-1.docker.io", "library/busybox", "1.36", None),
    ("docker://coreos/etcd", "registry-1.docker.io", "coreos/etcd", "latest", None),
    ("docker://docker.io/redis", "registry-1.docker.io", "library/redis", "latest", None),
    ("docker://quay.io/coreos/etcd:v3.5.0", "quay.io", "coreos/etcd", "v3.5.0", None),
    ("docker://127.0.0.1:5000/busybox", "127.0.0.1:5000", "busybox", "latest", None),
    ("docker://localhost/a/b/c:t", "localhost", "a/b/c", "t", None),
    (f"docker://127.0.0.1:5000/bb@{D}", "127.0.0.1:5000", "bb", None, D),
    (f"docker://bb:1@{D}", "registry-1.docker.io", "library/bb", "1", D),
    ("docker://my-reg.example:443/x_y/z.w", "my-reg.example:443", "x_y/z.w", "latest", None),
]

BAD = [
    "docker://",
    "docker://Busybox",
    "docker://busybox:",
    "docker://busybox:-x",
    "docker://busybox@sha256:abc",
    "docker://busybox@md5:" + "ab" * 16,
    "docker://a//b",
    "docker://127.0.0.1:5000/",
    "docker://host:port:x/a",
    "docker://../etc",
    "docker://a/../b",
    "docker://" + "a" * 300,
]


@pytest.mark.parametrize(("text", "registry", "repo", "tag", "digest"), GOOD)
def test_good_references(
    text: str, registry: str, repo: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_docker_ref(text)
    assert (ref.kind, ref.registry, ref.repository, ref.tag, ref.digest) == (
        "registry",
        registry,
        repo,
        tag,
        digest,
    )
    assert ref.pinned == (digest is not None)


@pytest.mark.parametrize("text", BAD)
def test_bad_references_get_rkts_message(text: str) -> None:
    with pytest.raises(UserError) as err:
        parse_docker_ref(text)
    assert err.value.message == (
        f'invalid docker URL "{text}"; expected syntax is '
        '"docker://[REGISTRY_HOST[:REGISTRY_PORT]/]IMAGE_NAME[:TAG]"'
    )


def test_digest_pins_are_kept_in_the_source_url() -> None:
    assert parse_docker_ref(f"docker://127.0.0.1:5000/bb@{D}").url == (
        f"docker://127.0.0.1:5000/bb@{D}"
    )
    assert parse_docker_ref("docker://busybox").url == (
        "docker://registry-1.docker.io/library/busybox:latest"
    )


def test_local_sources(tmp_path: Path) -> None:
    archive = parse_docker_ref(f"docker-archive:{tmp_path}/img.tar")
    assert (archive.kind, archive.path) == ("archive", tmp_path / "img.tar")
    oci = parse_docker_ref(f"oci:{tmp_path}/layout:v1")
    assert (oci.kind, oci.path, oci.tag) == ("oci", tmp_path / "layout", "v1")
    plain = parse_docker_ref(f"oci:{tmp_path}")
    assert (plain.path, plain.tag) == (tmp_path, None)


def test_fetch_routes_every_docker_scheme_here() -> None:
    for text in ("docker://busybox", "docker:busybox", "docker-archive:/x.tar", "oci:/x"):
        assert parse_image_ref(text).kind == "docker"

"""registries.d (containers-registries.d(5)): parsing, merging, the most specific namespace."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustd.shared.errors import LocalStateError
from trustd.shared.ocisig.name import DockerName
from trustd.shared.ocisig.registries_d import (
    load_registries_d,
    merge,
    parse_registries_file,
    signature_url,
)

CONFIG = """
default-docker:
  lookaside: https://sigs.example.com/default
docker:
  127.0.0.1:5000:
    sigstore: file:///var/lib/sigs
  127.0.0.1:5000/ns/app:
    lookaside: https://sigs.example.com/app/
  quay.io/ns:
    lookaside-staging: file:///staging
    use-sigstore-attachments: true
"""


@pytest.mark.parametrize(
    ("image", "read"),
    [
        ("docker://127.0.0.1:5000/ns/app", "https://sigs.example.com/app"),
        ("docker://127.0.0.1:5000/ns/app/sub", "https://sigs.example.com/app"),
        ("docker://127.0.0.1:5000/ns/application", "file:///var/lib/sigs"),  # whole segments
        ("docker://127.0.0.1:5000/other", "file:///var/lib/sigs"),
        ("docker://127.0.0.1:5001/ns/app", "https://sigs.example.com/default"),
        ("docker://quay.io/ns/x", "file:///staging"),  # staging reads when nothing else
        ("docker://busybox", "https://sigs.example.com/default"),
    ],
)
def test_the_most_specific_namespace_applies(image: str, read: str) -> None:
    config = merge([("a.yaml", CONFIG)])
    assert config.for_name(DockerName.parse(image)).read == read


def test_attachments_and_staging_are_read() -> None:
    entry = merge([("a.yaml", CONFIG)]).for_name(DockerName.parse("docker://quay.io/ns/x"))
    assert entry.attachments and entry.write == "file:///staging"


def test_signature_urls_follow_containers_image_layout() -> None:
    name = DockerName.parse("docker://127.0.0.1:5123/ns/app")
    url = signature_url("file:///tmp/look", name, "sha256:" + "b8" * 32, 1)
    assert url == f"file:///tmp/look/ns/app@sha256={'b8' * 32}/signature-1"  # skopeo 1.9's path


@pytest.mark.parametrize(
    ("files", "why"),
    [
        ([("a.yaml", "docker: [1]")], "docker is not a mapping"),
        ([("a.yaml", "docker:\n  quay.io: {lookasid: x}")], "unknown key 'lookasid'"),
        ([("a.yaml", "docker:\n  quay.io: {lookaside: ftp://x}")], "scheme 'ftp'"),
        ([("a.yaml", "docker:\n  Quay.io/NS: {}")], "is not a namespace"),
        ([("a.yaml", "default-docker: {}"), ("b.yaml", "default-docker: {}")], "also set in"),
        ([("a.yaml", "docker: {q.io: {}}"), ("b.yaml", "docker: {q.io: {}}")], "also configured"),
        ([("a.yaml", "docker:\n  quay.io: {use-sigstore-attachments: maybe}")], "true or false"),
        ([("a.yaml", "{")], "is not YAML"),
    ],
)  # fmt: skip
def test_bad_files_are_refused_naming_file_and_key(files: list[tuple[str, str]], why: str) -> None:
    with pytest.raises(LocalStateError) as info:
        merge(files)
    assert why in info.value.message


def test_local_config_replaces_system_config(tmp_path: Path) -> None:
    local, system = tmp_path / "local", tmp_path / "system"
    system.mkdir()
    (system / "x.yaml").write_text("default-docker: {lookaside: file:///system}\n")
    assert load_registries_d([local, system]).default.read == "file:///system"
    local.mkdir()
    (local / "x.yaml").write_text("default-docker: {lookaside: file:///local}\n")
    (local / "ignored.yml").write_text("{")  # only *.yaml, as upstream
    assert load_registries_d([local, system]).default.read == "file:///local"
    assert load_registries_d([tmp_path / "none"]).default.read is None


_yamlish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=12), c, max_size=3),
    max_leaves=10,
)


@given(st.text(max_size=200))
def test_arbitrary_text_parses_or_is_refused_as_local_state(text: str) -> None:
    _parses_or_is_refused(text)


def _parses_or_is_refused(text: str) -> None:
    """Only LocalStateError (naming the file) escapes; what parses has only allowed URLs."""
    try:
        default, namespaces = parse_registries_file(text, "x.yaml")
    except LocalStateError as exc:
        assert exc.message.startswith("x.yaml: ")
    else:
        entries = [*namespaces.values(), *([default] if default else [])]
        urls = [u for e in entries for u in (e.read, e.write) if u is not None]
        assert all(u.split("://")[0].lower() in {"http", "https", "file"} for u in urls)


@given(st.dictionaries(st.sampled_from(["docker", "default-docker", "x"]), _yamlish, max_size=3))
def test_arbitrary_documents_parse_or_are_refused_as_local_state(doc: dict[str, object]) -> None:
    import yaml  # noqa: PLC0415

    _parses_or_is_refused(yaml.safe_dump(doc))

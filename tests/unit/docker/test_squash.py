"""Squashing layers: whiteouts, opaque directories, hard links, and every escape refused."""

from __future__ import annotations

import io
import string
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.docker._layers import CONFIG, E, layer, openers
from trustd.shared.appc.aci import AciLimits, inspect_aci
from trustd.shared.docker.convert import Origin, convert
from trustd.shared.errors import RemoteLiedError

ORIGIN = Origin(name="example.com/squash", tag="1")


def squash(*layers: bytes, config: bytes = CONFIG) -> bytes:
    """Both ways of pass 2 (layers read again; pass 1's uncompressed copies read by offset,
    when ``out`` is a named file): the same bytes or the same refusal, no copy left behind."""
    out = io.BytesIO()
    with tempfile.TemporaryDirectory() as scratch:
        named = Path(scratch) / "download-aci"
        try:
            convert(openers(*layers), config, ORIGIN, out, label="test")
        except Exception as exc:
            with named.open("w+b") as f, pytest.raises(type(exc)) as again:
                convert(openers(*layers), config, ORIGIN, f, label="test")
            assert str(again.value) == str(exc)
            raise
        finally:
            if named.exists():
                assert [p.name for p in Path(scratch).iterdir()] == ["download-aci"]
        with named.open("w+b") as f:
            convert(openers(*layers), config, ORIGIN, f, label="test")
        assert named.read_bytes() == out.getvalue()
        assert [p.name for p in Path(scratch).iterdir()] == ["download-aci"]
    return out.getvalue()


def tree(aci: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(aci)) as tar:
        return {m.name.removeprefix("rootfs/"): m for m in tar if m.name.startswith("rootfs/")}


def content(aci: bytes, path: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(aci)) as tar:
        f = tar.extractfile(f"rootfs/{path}")
        assert f is not None
        return f.read()


BASE = layer(
    E("bin", "dir"),
    E("bin/hello", data=b"#!hello", mode=0o755),
    E("etc", "dir"),
    E("etc/keep", data=b"keep"),
    E("etc/gone", data=b"gone"),
    E("var", "dir"),
    E("var/cache", "dir"),
    E("var/cache/a", data=b"a"),
    E("var/cache/b", data=b"b"),
)


def test_whiteouts_and_opaque_directories() -> None:
    upper = layer(
        E("etc/.wh.gone"),
        E("var/cache/.wh..wh..opq"),
        E("var/cache/new", data=b"new"),
        compress="zstd",
    )
    got = tree(squash(BASE, upper))
    assert "etc/gone" not in got and "etc/keep" in got
    assert {p for p in got if p.startswith("var/cache/")} == {"var/cache/new"}
    assert not any(".wh." in p for p in got)


def test_a_whiteout_removes_a_whole_directory_and_a_file_replaces_one() -> None:
    upper = layer(E(".wh.var"), E("etc", data=b"now a file"), compress="none")
    got = tree(squash(BASE, upper))
    assert not any(p.startswith("var") for p in got)
    assert got["etc"].isfile() and not any(p.startswith("etc/") for p in got)


def test_hard_links_are_preserved_and_survive_their_target_being_replaced() -> None:
    lower = layer(
        E("bin", "dir"), E("bin/busybox", data=b"BB"), E("bin/sh", "hardlink", link="bin/busybox")
    )
    upper = layer(E("bin/busybox", data=b"NEW"))
    aci = squash(lower, upper)
    got = tree(aci)
    assert got["bin/sh"].isfile() and content(aci, "bin/sh") == b"BB"
    assert content(aci, "bin/busybox") == b"NEW"
    both = squash(lower)
    links = tree(both)
    assert links["bin/sh"].islnk() and links["bin/sh"].linkname == "rootfs/bin/busybox"
    inspect_aci(io.BytesIO(both), limits=AciLimits())


def test_device_nodes_are_dropped() -> None:
    got = tree(squash(layer(E("dev", "dir"), E("dev/fifo", "fifo"), E("x", data=b"x"))))
    assert "dev/fifo" not in got and "x" in got


@pytest.mark.parametrize(
    ("entries", "rule"),
    [
        ([E("../evil", data=b"x")], "dotdot"),
        ([E("a/../../evil", data=b"x")], "dotdot"),
        ([E("/etc/passwd", data=b"x")], "absolute-path"),
        ([E("link", "symlink", link="../../.."), E("y", data=b"y")], "symlink-escape"),
        ([E("link", "symlink", link="/etc"), E("link/passwd", data=b"x")], "write-through"),
        ([E("f", data=b"x"), E("f/x", data=b"y")], "write-through-non-directory"),
        ([E("h", "hardlink", link="../etc/shadow")], "dotdot"),
        ([E("h", "hardlink", link="missing")], "hardlink-escape"),
        ([E("dir/.wh..", data=b"")], "bad-whiteout"),
    ],
)
def test_escapes_are_refused_before_anything_is_written(entries: list[E], rule: str) -> None:
    out = io.BytesIO()
    with pytest.raises(RemoteLiedError, match=rule):
        convert(openers(BASE, layer(*entries)), CONFIG, ORIGIN, out, label="test")
    assert out.getvalue() == b""


def test_a_symlink_in_a_lower_layer_is_not_written_through() -> None:
    lower = layer(E("etc", "symlink", link="/host-etc"))
    with pytest.raises(RemoteLiedError, match="write-through-symlink"):
        squash(lower, layer(E("etc/passwd", data=b"root::0:0")))


def test_corrupt_and_oversized_layers_are_refused() -> None:
    with pytest.raises(RemoteLiedError, match="corrupt"):
        squash(b"\x1f\x8b" + b"garbage" * 100)
    out = io.BytesIO()
    from trustd.shared.docker._squash import SquashLimits  # noqa: PLC0415

    with pytest.raises(RemoteLiedError, match="size-cap"):
        convert(
            openers(BASE),
            CONFIG,
            ORIGIN,
            out,
            label="test",
            limits=SquashLimits(max_uncompressed_size=4096),
        )


def test_relative_commands_are_found_on_the_image_path() -> None:
    config = b'{"os": "linux", "architecture": "amd64", "config": {"Cmd": ["hello", "-x"]}}'
    aci = squash(BASE, config=config)
    info = inspect_aci(io.BytesIO(aci), limits=AciLimits())
    assert info.manifest.app is not None and info.manifest.app.exec == ("/bin/hello", "-x")
    with pytest.raises(RemoteLiedError, match="not found on its PATH"):
        squash(BASE, config=config.replace(b"hello", b"nothere"))


def test_diff_ids_bind_the_layers_to_the_config() -> None:
    config = (
        b'{"os": "linux", "architecture": "amd64", "config": {"Cmd": ["/bin/hello"]},'
        b' "rootfs": {"type": "layers", "diff_ids": ["sha256:' + b"0" * 64 + b'"]}}'
    )
    with pytest.raises(RemoteLiedError, match="diff_id"):
        squash(BASE, config=config)


_SEG = st.sampled_from(["a", "b", "..", ".", "", ".wh.a", ".wh..wh..opq", "etc", "x y"])
_NAME = st.builds(
    lambda lead, segs: lead + "/".join(segs),
    st.sampled_from(["", "./", "/"]),
    st.lists(_SEG, min_size=1, max_size=4),
)
_ENTRY = st.builds(
    E,
    _NAME,
    st.sampled_from(["file", "dir", "symlink", "hardlink"]),
    st.binary(max_size=8),
    st.one_of(_NAME, st.text(string.ascii_lowercase + "/.", min_size=1, max_size=12)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(_ENTRY, max_size=6), min_size=1, max_size=3))
def test_any_layers_give_a_valid_aci_inside_rootfs_or_a_refusal(layers: list[list[E]]) -> None:
    blobs = [layer(*entries, compress="none") for entries in layers]
    config = b'{"os": "linux", "architecture": "amd64", "config": {}}'
    out = io.BytesIO()
    try:
        convert(openers(*blobs), config, ORIGIN, out, label="prop")
    except RemoteLiedError:
        assert out.getvalue() == b""
        return
    info = inspect_aci(io.BytesIO(out.getvalue()), limits=AciLimits())
    assert info.manifest.name.value == "example.com/squash"
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        for member in tar:
            assert member.name in ("manifest", "rootfs") or member.name.startswith("rootfs/")
            assert ".." not in member.name.split("/")


def test_the_converted_tar_is_written_to_a_file_like_the_store_does(tmp_path: Path) -> None:
    target = tmp_path / "out.aci"
    with target.open("wb") as f:
        convert(openers(BASE), CONFIG, ORIGIN, f, label="test")
    assert inspect_aci(target, limits=AciLimits()).manifest.label("version") == "1"

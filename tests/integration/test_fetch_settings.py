"""``fetch.d``'s ``minRate`` through the CLI (ADR 0023): a configured floor stops a trickled
``docker://`` layer in the dropped fetch child, a bad file is refused before any network
with the file, the field and the fix (exit 254, store unchanged), and ``rkt config`` shows
what is in force. The hostile registry is tests/integration/_hostile.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._https import drip
from tests.conftest import ConfigDirs
from tests.integration._hostile import Hostile, hostile_registry
from tests.integration.conftest import rkt

MiB = 1024 * 1024
FILES = {"bin/sh": b"#!/bin/true\n"}


@pytest.fixture
def registry() -> Iterator[Hostile]:
    with hostile_registry() as reg:
        yield reg


def _floor(dirs: ConfigDirs, doc: object) -> Path:
    where = dirs.local / "fetch.d"
    where.mkdir(exist_ok=True)
    path = where / "floor.json"
    path.write_text(json.dumps(doc))
    path.chmod(0o644)
    return path


def _ids(dirs: ConfigDirs) -> list[str]:
    out = rkt(dirs, "image", "list", "--format=json", "--full")
    return sorted(r["id"] for r in json.loads(out.stdout)) if out.returncode == 0 else []


def test_a_configured_floor_stops_a_trickled_layer(
    registry: Hostile, shared_dirs: ConfigDirs
) -> None:
    """1 byte per 20 ms never trips the 60 s idle clock; a floor of 64 KiB per second (set
    in fetch.d) stops it in the first window. Which limit fired is the assertion."""
    registry.push(
        "slow/app", "latest", [FILES], sizes={0: 10 * MiB}, handlers={0: drip(0.02, 10 * MiB)}
    )
    _floor(shared_dirs, {"rktKind": "fetch", "rktVersion": "v1",
                         "minRate": {"bytes": 65536, "seconds": 1}})  # fmt: skip
    shown = json.loads(rkt(shared_dirs, "config", check=True).stdout)["stage0"]
    assert {"rktVersion": "v1", "rktKind": "fetch",
            "minRate": {"bytes": 65536, "seconds": 1}} in shown  # fmt: skip
    out = rkt(shared_dirs, "fetch", "--insecure-options=http,image",
              f"docker://{registry.host}/slow/app")  # fmt: skip
    assert out.returncode == 254, out.stderr
    assert "under the minimum throughput of 65536 bytes per 1 s" in out.stderr, out.stderr
    assert _ids(shared_dirs) == []


@pytest.mark.parametrize(
    ("rate", "says"),
    [
        ({"bytes": 0, "seconds": 60}, "minRate.bytes must be an integer from 1 to 1073741824"),
        ({"bytes": "64KiB", "seconds": 60}, "minRate.bytes must be an integer"),
        ({"bytes": 65536, "seconds": 0}, "minRate.seconds must be a number from 1 to 3600"),
    ],
)
def test_a_bad_floor_is_refused_before_any_network(
    registry: Hostile, shared_dirs: ConfigDirs, rate: object, says: str
) -> None:
    registry.push("any/app", "latest", [FILES])
    path = _floor(shared_dirs, {"rktKind": "fetch", "rktVersion": "v1", "minRate": rate})
    before = _ids(shared_dirs)
    for args in (("fetch", "--insecure-options=http,image", f"docker://{registry.host}/any/app"),
                 ("config",)):  # fmt: skip
        out = rkt(shared_dirs, *args)
        assert out.returncode == 254, out.stdout + out.stderr
        assert f"configuration file {path}: {says}" in out.stderr, out.stderr
        assert '"minRate": {"bytes": 65536, "seconds": 60}' in out.stderr  # the fix
    assert registry.gets("/v2/") == 0  # refused before the first request
    assert _ids(shared_dirs) == before

"""The ``docker://`` client against a hostile registry (issue #12): credentials, disk, rate,
platform. Each attack is a real HTTP server on 127.0.0.1 (``tests.integration._hostile``);
each refusal names the reason and the fix and leaves the store as it was.
Killed fetches (``kill -9``) are in test_docker_hostile_kill.py.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests._https import LOCAL_NAMES, LocalServer, drip, reply, trust_ca
from tests.integration._hostile import Hostile, endless, fill, hostile_registry, snapshot
from tests.integration._registry import job
from trustd.shared.errors import LocalStateError, RemoteLiedError, TransportError
from trustd.shared.store import ImageStore
from trustd.unprivileged.docker import RegistryLimits, fetch_docker
from trustd.unprivileged.transport import IMAGE_LIMITS

MiB = 1024 * 1024
FILES = {"bin/sh": b"#!/bin/true\n", "etc/motd": b"hello\n"}


@pytest.fixture
def registry() -> Iterator[Hostile]:
    with hostile_registry() as reg:
        yield reg


def _blob_limits(**kw: Any) -> RegistryLimits:
    return RegistryLimits(blob=dataclasses.replace(IMAGE_LIMITS, **kw))


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- credentials ---------------------------------------------------------------------------


def _bearer_registry(registry: Hostile, realm: str) -> None:
    """/v2/ asks for a Bearer token from ``realm``; content needs that token."""

    def guarded(inner: Any) -> Any:
        def handle(req: Any) -> None:
            if req.headers.get("Authorization") != "Bearer tok":
                challenge = f'Bearer realm="{realm}",service="hostile"'
                reply(b"{}", status=401, headers={"WWW-Authenticate": challenge})(req)
                return
            inner(req)

        return handle

    for path, handler in list(registry.server.routes.items()):
        registry.server.routes[path] = guarded(handler)


def test_a_bearer_realm_on_another_host_never_gets_the_registry_credentials(
    registry: Hostile, store: ImageStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain-HTTP registry (127.0.0.1) names an https realm on a host of its choosing
    (localhost): the auth.d password for the registry must not go there (it used to, as
    Basic)."""
    ca = trustme.CA()
    trust_ca(monkeypatch, ca, tmp_path)
    with LocalServer(tls=ca.issue_cert(*LOCAL_NAMES)) as realm:
        realm.routes["/token"] = reply(json.dumps({"token": "tok"}).encode())
        registry.push("victim/app", "latest", [FILES])
        _bearer_registry(registry, realm.url("/token", host="localhost"))
        secret = _basic("victim", "s3cret")
        creds = {registry.host: ("victim", "s3cret")}
        record = fetch_docker(
            f"docker://{registry.host}/victim/app", job(store, credentials=creds.get)
        )
        assert record.label("version") == "latest"
        sent = [r.headers.get("authorization") for r in realm.recorded]
        assert sent and secret not in sent and all(s is None for s in sent)


def test_a_realm_with_its_own_auth_d_entry_gets_only_that(
    registry: Hostile, store: ImageStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Configured realms: credentials listed in auth.d for the realm's own host:port go to
    it (e.g. a registry whose token service is elsewhere); the registry's never do."""
    ca = trustme.CA()
    trust_ca(monkeypatch, ca, tmp_path)
    with LocalServer(tls=ca.issue_cert(*LOCAL_NAMES)) as realm:
        realm.routes["/token"] = reply(json.dumps({"token": "tok"}).encode())
        registry.push("victim/app", "latest", [FILES])
        _bearer_registry(registry, realm.url("/token", host="localhost"))
        creds = {
            registry.host: ("victim", "s3cret"),
            f"localhost:{realm.port}": ("tokenuser", "tokenpass"),
        }
        fetch_docker(f"docker://{registry.host}/victim/app", job(store, credentials=creds.get))
        sent = {r.headers.get("authorization") for r in realm.recorded}
        assert sent == {_basic("tokenuser", "tokenpass")}


def test_a_plain_http_realm_never_gets_credentials(registry: Hostile, store: ImageStore) -> None:
    with LocalServer() as realm:
        realm.routes["/token"] = reply(json.dumps({"token": "tok"}).encode())
        registry.push("victim/app", "latest", [FILES])
        _bearer_registry(registry, realm.url("/token"))  # same host, but plain http
        creds = {registry.host: ("victim", "s3cret")}
        fetch_docker(f"docker://{registry.host}/victim/app", job(store, credentials=creds.get))
        assert realm.recorded and all("authorization" not in r.headers for r in realm.recorded)


# -- disk fill -------------------------------------------------------------------------------


def test_a_layer_declared_over_the_cap_is_refused_before_any_byte(
    registry: Hostile, store: ImageStore
) -> None:
    """An enormous ``size`` in the descriptor no longer replaces the transport cap."""
    image = registry.push("big/app", "latest", [FILES], sizes={0: 1 << 50}, handlers={0: endless()})
    before = snapshot(store)
    limits = _blob_limits(max_bytes=4 * MiB)
    with pytest.raises(RemoteLiedError, match=r"declares 1125899906842624 bytes, over the") as err:
        fetch_docker(f"docker://{registry.host}/big/app", job(store, limits=limits))
    assert str(4 * MiB) in err.value.message and "hostile" in err.value.hint
    assert registry.gets(image.layer_digests[0]) == 0
    assert snapshot(store) == before


def test_the_default_cap_holds_whatever_the_manifest_declares(
    registry: Hostile, store: ImageStore
) -> None:
    registry.push("big/app", "latest", [FILES], sizes={0: 1 << 40}, handlers={0: endless()})
    before = snapshot(store)
    with pytest.raises(RemoteLiedError, match=f"over the {IMAGE_LIMITS.max_bytes}-byte cap"):
        fetch_docker(f"docker://{registry.host}/big/app", job(store))
    assert snapshot(store) == before


def test_an_endless_body_stops_at_the_declared_size_and_keeps_no_partial(
    registry: Hostile, store: ImageStore
) -> None:
    image = registry.push("big/app", "latest", [FILES], sizes={0: 2 * MiB}, handlers={0: endless()})
    before = snapshot(store)
    with pytest.raises(RemoteLiedError, match=r"sent more, more than the 2097152 bytes"):
        fetch_docker(f"docker://{registry.host}/big/app", job(store))
    assert registry.gets(image.layer_digests[0]) == 1
    assert snapshot(store) == before  # no resumable partial of a lie


@contextlib.contextmanager
def _tmpfs(size: str) -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="trustd-full-", dir="/tmp"))
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)], check=True
    )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        where.rmdir()


def _need_root() -> None:
    import os  # noqa: PLC0415

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (integration tier)")


def test_a_layer_the_disk_cannot_hold_is_refused_before_download(registry: Hostile) -> None:
    _need_root()
    with _tmpfs("16m") as disk:
        store = ImageStore.open(disk / "data", create=True)
        image = registry.push(
            "big/app", "latest", [FILES], sizes={0: 64 * MiB}, handlers={0: endless()}
        )
        before = snapshot(store)
        limits = RegistryLimits(reserve=MiB)
        with pytest.raises(LocalStateError, match=r"needs 67108864 bytes .* are free") as err:
            fetch_docker(f"docker://{registry.host}/big/app", job(store, limits=limits))
        assert "full" in err.value.hint and "permission" not in err.value.hint
        assert f"df -h {store.layout.tmp}" in err.value.hint
        assert registry.gets(image.layer_digests[0]) == 0
        assert snapshot(store) == before


@pytest.mark.parametrize("reserve", [4 * MiB, 0], ids=["reserve", "real-enospc"])
def test_a_disk_that_fills_during_the_download_is_reported_full(
    registry: Hostile, reserve: int
) -> None:
    """Someone else fills the disk mid-download: the reserve check (or, with no reserve,
    the kernel's ENOSPC) stops it, says the disk is full, and keeps no partial."""
    _need_root()
    with _tmpfs("32m") as disk:
        store = ImageStore.open(disk / "data", create=True)
        filled: list[Path] = []

        def fill_at_one_mib(sent: int) -> None:
            if sent >= MiB and not filled:
                filled.append(fill(disk))

        registry.push(
            "big/app",
            "latest",
            [FILES],
            sizes={0: 20 * MiB},
            handlers={0: endless(before=fill_at_one_mib)},
        )
        before = snapshot(store)
        limits = RegistryLimits(reserve=reserve)
        with pytest.raises(LocalStateError) as err:
            fetch_docker(f"docker://{registry.host}/big/app", job(store, limits=limits))
        assert filled, "the server never filled the disk"
        assert "full" in err.value.hint and "permission" not in err.value.hint
        assert str(store.layout.tmp) in err.value.hint
        filled[0].unlink()
        assert snapshot(store) == before


# -- throughput floor ------------------------------------------------------------------------


def test_a_trickled_layer_hits_the_throughput_floor_not_the_total_timeout(
    registry: Hostile, store: ImageStore
) -> None:
    """1 byte per 20 ms never trips the idle clock; the floor (configured small here) cuts
    it off after one window. The assertion is which limit fired, not how long it took."""
    registry.push(
        "slow/app", "latest", [FILES], sizes={0: 10 * MiB}, handlers={0: drip(0.02, 10 * MiB)}
    )
    limits = _blob_limits(idle_timeout=60, total_timeout=3600, min_rate=(64 * 1024, 0.5))
    with pytest.raises(
        TransportError, match=r"under the minimum throughput of 65536 bytes per 0.5 s"
    ) as err:
        fetch_docker(f"docker://{registry.host}/slow/app", job(store, limits=limits))
    assert "trickling" in err.value.hint
    assert "did not finish within" not in err.value.message
    assert store.images() == []


def test_image_downloads_have_a_throughput_floor_by_default() -> None:
    assert IMAGE_LIMITS.min_rate is not None
    need, window = IMAGE_LIMITS.min_rate
    assert need > 0 and window < IMAGE_LIMITS.total_timeout


def test_a_fast_enough_body_passes_the_floor(registry: Hostile, store: ImageStore) -> None:
    registry.push("fast/app", "latest", [FILES])
    limits = _blob_limits(min_rate=(1, 0.001))
    record = fetch_docker(f"docker://{registry.host}/fast/app", job(store, limits=limits))
    assert record.label("version") == "latest"


# -- platform --------------------------------------------------------------------------------


def test_a_list_entry_whose_config_is_another_platform_is_refused(
    registry: Hostile, store: ImageStore
) -> None:
    arm = registry.push("multi/app", "arm", [FILES], arch="arm64")
    registry.manifest_list("multi/app", "latest", [(arm, "amd64")])  # the lie
    before = snapshot(store)
    with pytest.raises(
        RemoteLiedError, match="names it for linux/amd64, but its config says linux/arm64"
    ) as err:
        fetch_docker(f"docker://{registry.host}/multi/app", job(store))
    assert "nothing was stored" in err.value.hint
    assert registry.gets(arm.layer_digests[0]) == 0  # refused before any layer
    assert snapshot(store) == before


def test_a_truthful_list_entry_is_accepted(registry: Hostile, store: ImageStore) -> None:
    amd = registry.push("multi/app", "amd", [FILES], arch="amd64")
    arm = registry.push("multi/app", "arm", [{"bin/sh": b"arm\n"}], arch="arm64")
    registry.manifest_list("multi/app", "latest", [(arm, "arm64"), (amd, "amd64")])
    record = fetch_docker(f"docker://{registry.host}/multi/app", job(store))
    assert record.label("arch") == "amd64"
    assert record.provenance.source_digest == amd.digest

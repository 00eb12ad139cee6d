"""``--pull-policy=never`` makes no network call (issue #15 part 5): the store is consulted
by name and version, and nothing else. Every connection would go through a counting proxy on
127.0.0.1 (HTTPS_PROXY and HTTP_PROXY point at it), and it sees none. The key is trusted as a
root key, so no prefix key exists and key discovery would otherwise be attempted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._aci import build_aci
from tests._proxy import LocalProxy
from tests.conftest import ConfigDirs, Keys
from trustd.cli.main import main

NAME = "example.com/offline"


@pytest.fixture
def stored(tmp_path: Path, keys: Keys, config_dirs: ConfigDirs) -> ConfigDirs:
    aci = build_aci(tmp_path / "offline.aci", NAME)
    keys.gpg.sign(keys.good, aci, tmp_path / "offline.aci.asc")
    key = tmp_path / "good.asc"
    key.write_bytes(keys.public(keys.good))
    flags = config_dirs.flags()
    assert main([*flags, "trust", "--root", "--skip-fingerprint-review", str(key)]) == 0
    assert main([*flags, "fetch", str(aci)]) == 0
    return config_dirs


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalProxy]:
    with LocalProxy(forward=False) as counting:  # counts; nothing leaves the machine
        for variable in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
            monkeypatch.setenv(variable, counting.url)
        yield counting


def test_never_takes_a_stored_name_with_no_network_call(
    stored: ConfigDirs, proxy: LocalProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main([*stored.flags(), "fetch", "--pull-policy=never", NAME]) == 0
    assert capsys.readouterr().out.startswith("sha512-")
    assert main([*stored.flags(), "fetch", "--pull-policy=never", f"{NAME}:1.0.0"]) == 0
    assert proxy.seen == []


def test_never_refuses_a_name_not_in_the_store_with_no_network_call(
    stored: ConfigDirs, proxy: LocalProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*stored.flags(), "fetch", "--pull-policy=never", "example.com/absent"]) == 254
    assert "not found in the store" in capsys.readouterr().err
    assert main([*stored.flags(), "fetch", "--pull-policy=never", f"{NAME}:9.9"]) == 254
    assert proxy.seen == []


def test_update_does_go_to_the_network(
    stored: ConfigDirs, proxy: LocalProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    """The counter is live: without never, the same fetch asks the (proxied) network."""
    assert main([*stored.flags(), "fetch", "--pull-policy=update", NAME]) == 254
    assert [s.target for s in proxy.seen][:1] == ["example.com:443"]


def test_new_takes_a_stored_name_with_no_network_call(
    stored: ConfigDirs, proxy: LocalProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*stored.flags(), "fetch", "--pull-policy=new", NAME]) == 0
    assert proxy.seen == []
    assert main([*stored.flags(), "fetch", "--pull-policy=new", "example.com/absent"]) == 254
    assert [s.target for s in proxy.seen][:1] == ["example.com:443"]  # not stored: it asks

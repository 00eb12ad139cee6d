"""auth.d can stay ``0600 root:root``: root reads it before the fetch child drops privileges,
and a user in group rkt who cannot read it gets an error naming the file, not the password
and not a bare PermissionError (issue #10, class 7)."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._aci import build_aci
from tests._https import LOCAL_NAMES, LocalServer, reply, trust_ca
from tests.conftest import ConfigDirs, Keys, snapshot
from tests.integration._attacker import rkt_as_member
from tests.integration.conftest import ensure_user, require_root, rkt

NAME = "example.com/authd"
USER, PASSWORD = "reader", "s3cret-password"
EXPECTED = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def _needs_auth(body: bytes) -> Any:
    ok, refused = reply(body), reply(b"", status=401)

    def handle(req: Any) -> None:
        (ok if req.headers.get("Authorization") == EXPECTED else refused)(req)

    return handle


@pytest.fixture
def server(
    shared_dirs: ConfigDirs, ca: Any, keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalServer]:
    require_root()
    subprocess.run(["bash", "scripts/setup-groups.sh"], check=True)
    ensure_user()
    bundle = trust_ca(monkeypatch, ca, shared_dirs.system.parent)  # readable by the fetch user
    bundle.chmod(0o644)
    aci = build_aci(tmp_path / "img.aci", NAME)
    keys.gpg.sign(keys.good, aci, tmp_path / "img.aci.asc")
    key = tmp_path / "key.asc"
    key.write_bytes(keys.public(keys.good))
    trusted = rkt(
        shared_dirs, "trust", "--prefix", "example.com", "--skip-fingerprint-review", str(key)
    )
    assert trusted.returncode == 0, trusted.stderr
    assert rkt(shared_dirs, "image", "list").returncode == 0  # root creates the store
    with LocalServer(tls=ca.issue_cert(*LOCAL_NAMES)) as srv:
        srv.routes["/img.aci"] = _needs_auth(aci.read_bytes())
        srv.routes["/img.aci.asc"] = _needs_auth((tmp_path / "img.aci.asc").read_bytes())
        auth_d = shared_dirs.local / "auth.d"
        auth_d.mkdir(mode=0o755)
        creds = auth_d / "server.json"
        creds.write_text(
            json.dumps(
                {
                    "rktKind": "auth",
                    "rktVersion": "v1",
                    "domains": [f"127.0.0.1:{srv.port}"],
                    "type": "basic",
                    "credentials": {"user": USER, "password": PASSWORD},
                }
            )
        )
        creds.chmod(0o600)  # root:root, as an administrator keeps a password
        yield srv


def test_a_group_member_without_access_gets_the_file_and_the_fix(
    shared_dirs: ConfigDirs, server: LocalServer
) -> None:
    creds = shared_dirs.local / "auth.d" / "server.json"
    before = snapshot(shared_dirs.data)
    result = rkt_as_member(shared_dirs, "fetch", server.url("/img.aci"))
    assert result.returncode == 254, result.stderr
    assert f"fetch: cannot read credentials {creds}: permission denied" in result.stderr
    assert "run the fetch as root" in result.stderr and "administrator" in result.stderr
    assert "Traceback" not in result.stderr and "PermissionError" not in result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    assert not server.recorded  # nothing was asked of the server without the credentials
    assert snapshot(shared_dirs.data) == before


def test_root_reads_auth_d_before_the_drop_and_the_fetch_succeeds(
    shared_dirs: ConfigDirs, server: LocalServer
) -> None:
    result = rkt(shared_dirs, "--debug", "fetch", "--full", server.url("/img.aci"))
    assert result.returncode == 0, result.stderr
    assert "fetching as rkt-fetch" in result.stderr  # the download ran unprivileged
    assert [r.headers.get("authorization") for r in server.recorded if r.path == "/img.aci"] == [
        EXPECTED
    ]
    key = result.stdout.strip()
    assert list((shared_dirs.data / "cas/blob/sha512").glob(f"*/{key}"))

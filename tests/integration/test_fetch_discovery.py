"""``rkt fetch NAME`` end to end: appc discovery on port 443 of a real HTTPS server in a
private network namespace (scripts/local_https.py), real DNS through its own /etc/hosts,
TOFU key discovery, root's privilege drop, and a real user in group rkt.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests._aci import build_aci
from tests.conftest import ConfigDirs, Keys
from tests.integration.conftest import RKT, ensure_user, require_root

HOST = "apps.trustd.test"
NAME = f"{HOST}/hello"
HARNESS = str(Path(__file__).parents[2] / "scripts/local_https.py")
USER = "trustd-it-user"


@pytest.fixture
def site(shared_dirs: ConfigDirs, keys: Keys) -> Path:
    """``https://apps.trustd.test/hello?ac-discovery=1`` and what its meta tags point at."""
    require_root()
    subprocess.run(["bash", "scripts/setup-groups.sh"], check=True)
    root = Path(f"{shared_dirs.data}-site")
    images = root / HOST / "images" / HOST
    images.mkdir(parents=True)
    (root / HOST / "hello").mkdir()
    (root / HOST / "hello" / "index.html").write_text(
        f'<meta name="ac-discovery" content="{HOST} '
        f'https://{HOST}/images/{{name}}-{{version}}-{{os}}-{{arch}}.{{ext}}">\n'
        f'<meta name="ac-discovery-pubkeys" content="{HOST} https://{HOST}/pubkeys.asc">\n'
    )
    for version, claims in (("1.0.0", "1.0.0"), ("2.0.0", "1.0.0")):  # 2.0.0 lies
        aci = images / f"hello-{version}-linux-amd64.aci"
        build_aci(aci, NAME, version=claims)
        keys.gpg.sign(keys.good, aci, Path(f"{aci}.asc"))
    (root / HOST / "pubkeys.asc").write_bytes(keys.public(keys.good))
    for p in [root, *root.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return root


def run(
    site: Path, dirs: ConfigDirs, *args: str, user: str | None = None, defer: bool = False
) -> subprocess.CompletedProcess[str]:
    as_user = ["setpriv", f"--reuid={user}", "--regid=rkt", "--init-groups"] if user else []
    extra = ["--defer-signatures"] if defer else []
    cmd = [
        sys.executable,
        HARNESS,
        "--root",
        str(site),
        "--host",
        HOST,
        *extra,
        "--",
        *as_user,
        RKT,
        *dirs.flags(),
        *args,
    ]
    return subprocess.run(
        cmd, capture_output=True, text=True, check=False, timeout=120, stdin=subprocess.DEVNULL
    )


def test_fetch_by_name_with_key_discovery(site: Path, shared_dirs: ConfigDirs, keys: Keys) -> None:
    result = run(site, shared_dirs, "--trust-keys-from-https", "fetch", f"{NAME}:1.0.0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("sha512-")  # stdout carries only the ID
    assert f'Added key for prefix "{NAME}"' in result.stderr
    trusted = shared_dirs.local / "trustedkeys/prefix.d" / NAME / keys.good.lower()
    assert trusted.is_file()
    listed = subprocess.run(
        [RKT, *shared_dirs.flags(), "image", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    (record,) = json.loads(listed.stdout)
    assert record["source"].startswith(f"https://{HOST}/images/")
    assert record["provenance"]["signers"] == [keys.good.upper()]


def test_without_a_tty_keys_are_not_trusted_and_the_fetch_fails(
    site: Path, shared_dirs: ConfigDirs
) -> None:
    result = run(site, shared_dirs, "fetch", f"{NAME}:1.0.0")
    assert result.returncode == 254
    assert "pubkey:  - call rkt with --trust-keys-from-https" in result.stderr
    assert f'pubkey:  - run: rkt trust --prefix "{NAME}"' in result.stderr
    assert "which is not trusted for prefix" in result.stderr
    assert not (shared_dirs.local / "trustedkeys").exists()


def test_deferred_signatures_and_a_user_in_group_rkt(
    site: Path, shared_dirs: ConfigDirs, keys: Keys, tmp_path: Path
) -> None:
    key = tmp_path / "k.asc"
    key.write_bytes(keys.public(keys.good))
    subprocess.run(
        [
            RKT,
            *shared_dirs.flags(),
            "trust",
            "--prefix",
            HOST,
            "--skip-fingerprint-review",
            str(key),
        ],
        check=True,
        capture_output=True,
    )
    ensure_user(USER)
    subprocess.run([RKT, *shared_dirs.flags(), "image", "list"], capture_output=True, check=False)
    first = run(site, shared_dirs, "fetch", f"{NAME}:1.0.0", defer=True)  # root creates the store
    assert first.returncode == 0, first.stderr
    assert "server requested deferring the signature download" in first.stderr
    again = run(site, shared_dirs, "fetch", "--pull-policy=update", f"{NAME}:1.0.0", user=USER)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout


def test_a_server_that_lies_about_the_version_is_refused(
    site: Path, shared_dirs: ConfigDirs
) -> None:
    result = run(site, shared_dirs, "--trust-keys-from-https", "fetch", f"{NAME}:2.0.0")
    assert result.returncode == 254
    assert (
        'requested value for label "version": "2.0.0" differs from fetched aci label '
        'value: "1.0.0"' in result.stderr
    )
    assert not list((shared_dirs.data / "cas/blob/sha512").glob("*/*"))

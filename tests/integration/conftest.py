"""Integration tier: runs as root with real parts; skips (with the reason) otherwise."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._busybox import busybox_aci
from tests._policy import install_policy
from tests.conftest import ConfigDirs, Keys
from trustd.privileged.measure import stop_embedded

RKT = str(Path(sys.executable).with_name("rkt"))
NAME = "example.com/busybox"


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (integration tier; make test runs it as root in CI)")


_MDS_GUARD = "trustd: metadata service port "


def _mds_guards() -> set[str]:
    if os.geteuid() != 0 or shutil.which("iptables") is None:
        return set()
    rules = subprocess.run(
        ["iptables", "-w", "-S", "OUTPUT"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    return {rule for rule in rules if _MDS_GUARD in rule}


@pytest.fixture(scope="session", autouse=True)
def _remove_metadata_guards_the_tests_added() -> Iterator[None]:
    """``rkt metadata-service`` adds an OUTPUT rule per port that outlives the daemon on
    purpose (ADR 0025 addendum); the tests' daemons listen on free ports, so the session
    removes the rules they added and leaves the host's own."""
    before = _mds_guards()
    yield
    for rule in sorted(_mds_guards() - before):  # "-A OUTPUT ...", quoted as a shell would
        subprocess.run(["iptables", "-w", "-D", *shlex.split(rule)[1:]], check=False)


TEST_USER = "trustd-it-user"


def ensure_user(name: str = TEST_USER) -> str:
    """A real unprivileged system user in group rkt (created once, kept for later runs)."""
    known = subprocess.run(["getent", "passwd", name], capture_output=True, check=False)
    if known.returncode != 0:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--gid",
                "rkt",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            check=True,
        )
    return name


@pytest.fixture
def shared_dirs() -> Iterator[ConfigDirs]:
    """Config and data dirs that other users may traverse (pytest's tmp_path is root-only)."""
    base = Path(tempfile.mkdtemp(prefix="trustd-it-", dir="/tmp"))
    base.chmod(0o755)
    dirs = ConfigDirs(base / "usr-lib-rkt", base / "etc-rkt", base / "var-lib-rkt")
    for d in (dirs.system, dirs.local):
        d.mkdir(mode=0o755)
    install_policy(dirs.system)
    yield dirs
    stop_embedded(dirs.data)  # every pod start measured into an embedded swtpm: stop it
    shutil.rmtree(base, ignore_errors=True)


_APP_PREFIX = re.compile(r"^[a-z0-9-]+\[\d+\]: ", re.MULTILINE)


def app_output(text: str) -> str:
    """Apps' output as they wrote it: ``rkt run`` shows each line as ``<app>[<pid>]: <line>``
    (rkt's stage1 journal format); this drops the prefix."""
    return _APP_PREFIX.sub("", text)


def rkt(dirs: ConfigDirs, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [RKT, *dirs.flags(), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def image(shared_dirs: ConfigDirs, keys: Keys, tmp_path: Path) -> str:
    """A signed busybox image in the store; returns its ID."""
    require_root()
    subprocess.run(["bash", "scripts/setup-groups.sh"], check=True)
    aci = busybox_aci(tmp_path / "bb.aci", NAME)
    keys.gpg.sign(keys.good, aci, tmp_path / "bb.aci.asc")
    key = tmp_path / "k.asc"
    key.write_bytes(keys.public(keys.good))
    rkt(
        shared_dirs,
        "trust",
        "--prefix",
        "example.com",
        "--skip-fingerprint-review",
        str(key),
        check=True,
    )
    return rkt(shared_dirs, "fetch", "--full", str(aci), check=True).stdout.strip()

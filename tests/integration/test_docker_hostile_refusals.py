"""The refusal circle a new user walked with an unsigned Docker image (issue #12), and the
unsigned opt-out as the threat model states it: ``--insecure-options=image`` *and* a policy
scope that allows it, neither alone.

Before: the hint said to pass --insecure-options=image; with it, the policy refused and
suggested ``rkt trust --prefix "127.0.0.1-35123/newb/bb" KEY`` (a mangled name no trust
command can use for a Docker image) and ``rkt policy explain sha512-…`` for an image that
was never stored. Now every hint is a command that works, spelled as the user typed the
image, and following them in order ends with the image fetched. Real ``rkt`` against the
hostile registry on 127.0.0.1, under the shipped policy.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._policy import SHIPPED, install_policy
from tests.conftest import ConfigDirs
from tests.integration._hostile import Hostile, hostile_registry
from tests.integration.conftest import RKT
from trustd.shared.store import ImageStore

REPO = "newb/bb"


@pytest.fixture
def dirs() -> Iterator[ConfigDirs]:
    base = Path(tempfile.mkdtemp(prefix="trustd-newb-", dir="/tmp"))
    base.chmod(0o755)
    made = ConfigDirs(base / "sys", base / "etc", base / "data")
    made.local.mkdir()
    install_policy(made.system, SHIPPED.read_text())  # the shipped policy, unchanged
    yield made
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def registry() -> Iterator[Hostile]:
    with hostile_registry() as reg:
        reg.push(REPO, "latest", [{"bin/sh": b"#!/bin/true\n"}])
        yield reg


def _rkt(dirs: ConfigDirs, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RKT, *dirs.flags(), *args], capture_output=True, text=True, check=False, timeout=120
    )


def _hint(stderr: str) -> str:
    return " ".join(line.strip() for line in stderr.splitlines() if line.startswith("  "))


def _store(dirs: ConfigDirs) -> list[tuple[str, int]]:
    """Every file of the store but the scratch dir's (name, size)."""
    out = []
    for dirpath, _d, names in os.walk(dirs.data):
        for name in names:
            path = Path(dirpath) / name
            out.append((str(path.relative_to(dirs.data)), path.lstat().st_size))
    return sorted(out)


def _allow_unsigned(dirs: ConfigDirs, name: str) -> None:
    text = SHIPPED.read_text() + f'\n[scopes."{name}".run]\ninsecure_options = ["image"]\n'
    install_policy(dirs.system, text)


def test_the_hints_lead_a_new_user_out_of_the_circle(registry: Hostile, dirs: ConfigDirs) -> None:
    url = f"docker://{registry.host}/{REPO}"
    mangled = f"127.0.0.1-{registry.server.port}/{REPO}"
    assert _rkt(dirs, "image", "list").returncode == 0
    before = _store(dirs)

    # 1. no flag: the hint names both halves of the opt-out, the image as typed
    first = _rkt(dirs, "--insecure-options=http", "fetch", url)
    assert first.returncode == 254, first.stderr
    assert "try --insecure-options=image" in first.stderr
    hint = _hint(first.stderr)
    assert url in hint and "--insecure-options=image" in hint and "policy scope" in hint
    assert _store(dirs) == before and registry.gets("/blobs/") == 0

    # 2. the flag alone: refused by policy before any download; no trust command for a
    #    mangled name, and an explain command that works for an image never stored
    second = _rkt(dirs, "--insecure-options=image,http", "fetch", url)
    assert second.returncode == 254, second.stderr
    assert f'docker image "{url}" is unsigned' in second.stderr
    hint = _hint(second.stderr)
    assert "rkt trust" not in second.stderr and "sha512-" not in second.stderr
    assert f"rkt policy explain {url}" in hint
    assert _store(dirs) == before and registry.gets("/blobs/") == 0

    # 3. the explain command the hint gave, as given
    explain_cmd = shlex.split(hint.split("see why: ", 1)[1])
    assert explain_cmd[:3] == ["rkt", "policy", "explain"]
    explained = _rkt(dirs, *explain_cmd[1:])
    assert explained.returncode == 0, explained.stderr
    assert f"image:    {url}:latest" in explained.stdout  # as typed (issue #12)
    assert "run.insecure_options: (none)" in explained.stdout

    # 4. the scope the hint describes, spelled as typed (never the store's mangling), then
    #    the fetch succeeds
    assert f'"{url}"' in hint and 'run.insecure_options lists "image"' in hint
    assert mangled not in hint and mangled not in explained.stdout
    _allow_unsigned(dirs, url)
    done = _rkt(dirs, "--insecure-options=image,http", "fetch", url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("sha512-")


def test_a_permitting_scope_without_the_flag_is_refused(
    registry: Hostile, dirs: ConfigDirs
) -> None:
    """The docs' rule, one way: an accept-anything scope alone no longer admits it."""
    name = f"127.0.0.1-{registry.server.port}/{REPO}"
    install_policy(
        dirs.system,
        SHIPPED.read_text() + f'\n[scopes."{name}".require]\ntype = "accept-anything"\n',
    )
    assert _rkt(dirs, "image", "list").returncode == 0
    before = _store(dirs)
    refused = _rkt(dirs, "--insecure-options=http", "fetch", f"docker://{registry.host}/{REPO}")
    assert refused.returncode == 254, refused.stderr
    assert "--insecure-options=image" in _hint(refused.stderr)
    assert "policy scope" not in _hint(refused.stderr)  # the scope already allows it
    assert _store(dirs) == before and registry.gets("/blobs/") == 0


def test_the_flag_and_a_permitting_scope_admit_it_as_insecure(
    registry: Hostile, dirs: ConfigDirs
) -> None:
    """The other way: both halves given, the image is stored and recorded as insecure."""
    _allow_unsigned(dirs, f"127.0.0.1-{registry.server.port}/{REPO}")
    url = f"docker://{registry.host}/{REPO}"
    done = _rkt(dirs, "--insecure-options=image,http", "fetch", url)
    assert done.returncode == 0, done.stderr
    (record,) = ImageStore.open(dirs.data).index.by_key_prefix(done.stdout.strip())
    assert record.provenance.insecure and record.provenance.source_digest.startswith("sha256:")

"""``kill -9`` during a ``docker://`` fetch (issue #12: leaked downloads).

Each kill used to leave a full-size ``download-*`` (the converted ACI) in ``cas/tmp`` that
nothing reused or removed for a day. Now a scratch file is held under an flock while it is
in use; the next fetch removes every one whose lock is free, and resumes (or, once stale,
removes) the layer partials. Real ``rkt fetch`` processes, killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ConfigDirs
from tests.integration._hostile import Hostile, hostile_registry, layer
from tests.integration._registry import job
from tests.integration.conftest import RKT, require_root
from trustd.shared.store import ImageStore
from trustd.shared.store.scratch import locked_scratch
from trustd.unprivileged.docker import fetch_docker
from trustd.unprivileged.docker._blobs import RESUME_WINDOW, blob_path

MiB = 1024 * 1024
BIG = {"bin/sh": b"#!/bin/true\n", "zeros": b"\0" * (96 * MiB)}  # squashing takes a while


@pytest.fixture
def registry() -> Iterator[Hostile]:
    with hostile_registry() as reg:
        yield reg


def _tmp(dirs: ConfigDirs) -> Path:
    return dirs.data / "cas" / "tmp"


def _leftovers(dirs: ConfigDirs, prefix: str) -> list[Path]:
    tmp = _tmp(dirs)
    return sorted(p for p in tmp.iterdir() if p.name.startswith(prefix)) if tmp.exists() else []


def _fetch(dirs: ConfigDirs, url: str, **kw: Any) -> subprocess.Popen[str]:
    cmd = [RKT, *dirs.flags(), "--insecure-options=image,http", "fetch", url]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **kw
    )


def _kill_when(proc: subprocess.Popen[str], ready: Any, what: str) -> None:
    """SIGKILL the fetch (its whole session: root's rkt and the rkt-fetch child) once
    ``ready()`` holds; polls, without a deadline on the fetch itself."""
    deadline = time.monotonic() + 120
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"the fetch ended before {what}: {proc.communicate()}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"never saw {what}")
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def _run(dirs: ConfigDirs, url: str) -> subprocess.CompletedProcess[str]:
    proc = _fetch(dirs, url)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("again", ["same", "other"])
def test_a_killed_conversion_leaves_a_download_the_next_fetch_removes(
    registry: Hostile, shared_dirs: ConfigDirs, again: str
) -> None:
    require_root()
    registry.push("kill/big", "latest", [BIG])
    registry.push("kill/small", "latest", [{"bin/sh": b"#!/bin/true\n"}])
    url = f"docker://{registry.host}/kill/big"

    def converting() -> bool:
        return any(p.stat().st_size > MiB for p in _leftovers(shared_dirs, "download-"))

    for _ in range(3):  # three kills leaked three full-size files before the fix
        _kill_when(_fetch(shared_dirs, url), converting, "a download-* file being written")
        # what this kill left; the previous kill's file was swept by this fetch
        assert len(_leftovers(shared_dirs, "download-")) == 1
    nxt = url if again == "same" else f"docker://{registry.host}/kill/small"
    done = _run(shared_dirs, nxt)
    assert done.returncode == 0, done.stderr
    assert _leftovers(shared_dirs, "download-") == []
    assert _leftovers(shared_dirs, "docker-blob-") == [] or again == "other"


def test_a_download_in_use_is_never_swept(registry: Hostile, shared_dirs: ConfigDirs) -> None:
    """A scratch file whose owner is alive (its lock held) survives another fetch."""
    require_root()
    registry.push("kill/small", "latest", [{"bin/sh": b"#!/bin/true\n"}])
    first = _run(shared_dirs, f"docker://{registry.host}/kill/small:latest")
    assert first.returncode == 0, first.stderr
    fd, name = locked_scratch(_tmp(shared_dirs))
    try:
        registry.push("kill/small2", "latest", [{"bin/sh": b"#!/bin/sh\n"}])
        done = _run(shared_dirs, f"docker://{registry.host}/kill/small2")
        assert done.returncode == 0, done.stderr
        assert Path(name).exists()
    finally:
        os.close(fd)
        Path(name).unlink()


def _half_then_stall(data: bytes) -> Any:
    def handle(req: Any) -> None:
        req.send_response(200)
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data[: len(data) // 2])
        req.wfile.flush()
        req.server.owner.stop.wait(60)

    return handle


def test_a_killed_layer_download_is_resumed_or_swept(
    registry: Hostile, shared_dirs: ConfigDirs
) -> None:
    """The layer partial a kill leaves is taken up by the next fetch of that image; a
    partial no fetch wants is removed once it has not been touched for RESUME_WINDOW."""
    require_root()
    noise = os.urandom(2 * MiB)  # incompressible: the half is a real partial
    image = registry.push("kill/layer", "latest", [{"bin/sh": b"#!/bin/true\n", "noise": noise}])
    path = f"/v2/kill/layer/blobs/{image.layer_digests[0]}"
    good = registry.server.routes[path]
    blob = f"docker-blob-{image.layer_digests[0].replace(':', '-')}"
    body, _ = layer({"bin/sh": b"#!/bin/true\n", "noise": noise})  # the same bytes again
    registry.server.routes[path] = _half_then_stall(body)
    url = f"docker://{registry.host}/kill/layer"

    def partial() -> bool:
        p = _tmp(shared_dirs) / blob
        return p.exists() and p.stat().st_size > 0

    _kill_when(_fetch(shared_dirs, url), partial, "a partial layer")
    assert (_tmp(shared_dirs) / blob).exists()

    registry.push("kill/other", "latest", [{"bin/sh": b"#!/bin/sh\n"}])
    other = _run(shared_dirs, f"docker://{registry.host}/kill/other")
    assert other.returncode == 0, other.stderr
    assert (_tmp(shared_dirs) / blob).exists()  # fresh: kept for the fetch that wants it

    registry.server.routes[path] = good
    resumed = _run(shared_dirs, url)
    assert resumed.returncode == 0, resumed.stderr
    assert not (_tmp(shared_dirs) / blob).exists()  # taken up, and removed when stored

    stale = _tmp(shared_dirs) / blob
    stale.write_bytes(b"half")
    old = time.time() - RESUME_WINDOW - 60
    os.utime(stale, (old, old))
    again = _run(shared_dirs, f"docker://{registry.host}/kill/other")
    assert again.returncode == 0, again.stderr
    assert not stale.exists()


def test_sweep_keeps_what_this_fetch_resumes(registry: Hostile, tmp_path: Path) -> None:
    """In process: a stale partial of a layer this fetch needs is resumed, not removed."""
    store = ImageStore.open(tmp_path / "data", create=True)
    image = registry.push("kill/one", "latest", [{"bin/sh": b"#!/bin/true\n"}])
    partial = blob_path(store.layout.tmp, image.layer_digests[0])
    partial.write_bytes(b"\x1f")  # the first byte of any gzip stream
    old = time.time() - RESUME_WINDOW - 60
    os.utime(partial, (old, old))
    record = fetch_docker(f"docker://{registry.host}/kill/one", job(store))
    assert record.label("version") == "latest"
    assert list(store.layout.tmp.iterdir()) == []


def test_a_group_member_cannot_make_the_sweep_follow_wait_or_remove_what_is_not_its(
    registry: Hostile, shared_dirs: ConfigDirs
) -> None:
    """``cas/tmp`` is the group's: a member plants a ``download-*`` symlink to a file
    outside, a fifo (a blocking open would hang the fetch) and a directory. The sweep opens
    with O_NOFOLLOW|O_NONBLOCK and removes regular files only: the target is intact, the
    fetch finishes, and the planted entries are left as they were."""
    require_root()
    from tests.integration._attacker import member  # noqa: PLC0415

    registry.push("kill/small", "latest", [{"bin/sh": b"#!/bin/true\n"}])
    first = _run(shared_dirs, f"docker://{registry.host}/kill/small")
    assert first.returncode == 0, first.stderr
    victim = shared_dirs.data.parent / "victim"
    victim.write_text("keep me\n")
    victim.chmod(0o666)
    tmp = _tmp(shared_dirs)
    member("ln", "-s", str(victim), str(tmp / "download-link"))
    member("mkfifo", str(tmp / "download-fifo"))
    member("mkdir", str(tmp / "download-dir"))
    registry.push("kill/small2", "latest", [{"bin/sh": b"#!/bin/sh\n"}])
    done = _run(shared_dirs, f"docker://{registry.host}/kill/small2")
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "keep me\n"
    assert (tmp / "download-link").is_symlink() and (tmp / "download-fifo").exists()
    assert (tmp / "download-dir").is_dir()

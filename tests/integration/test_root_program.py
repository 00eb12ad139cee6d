"""The root program is a program of its own (ADR 0010): what it loads, what it accepts.

``rkt run`` execs ``python -I -m trustd.privileged.main --request-fd N``. Here the real entry
module runs a real pod from a real request, and at its exit the test reads which modules the
root process loaded: none of the network clients or the unprivileged side may be among them,
although the ``rkt`` process that fetched the image loaded all of them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ConfigDirs
from tests.integration.conftest import rkt
from trustd.shared.request import VERSION, Dirs, Envelope, Run, RunRequest, encode
from trustd.shared.request import AppRequest as App

# Not here, on purpose: ``urllib.parse`` (a string parser that the stdlib's pathlib imports) and
# ``email.utils`` (cryptography.x509 parses addresses with it; tpm2-pytss loads x509); neither
# does I/O. ``socket``: the embedded swtpm's UNIX socket in the 0700 tpm dir (issue #11).
FORBIDDEN = (
    "ssl",
    "http",
    "urllib.request",
    "urllib.response",
    "urllib.error",
    "asyncio",
    "socketserver",
    "xmlrpc",
    "ftplib",
    "smtplib",
    "requests",
    "urllib3",
    "trustd.unprivileged",
    "trustd.cli",
)
# The pod's UUID comes from os.urandom, the seccomp sets are read beside their module, and a
# limit's decimal arithmetic is loaded only for a pod with limits. (tomllib is lazy too, but
# this first run of the data dir parses the policy to fill its compiled cache.)
NOT_ON_A_PLAIN_RUN = ("uuid", "platform", "decimal", "importlib.resources", "zipfile")
# Probe: run an entry module as ``-m`` would, and record sys.modules when the process exits
# (both entry points end with os._exit, skipping atexit: issue #14), in this process, not a
# forked child; and, in OUT.before, what the interpreter had loaded before the entry module
# (site and its .pth files: ``make test``'s coverage hook loads platform, uuid and decimal).
_PROBE = """
import json, os, runpy, sys
out, pid, real_exit = sys.argv.pop(1), os.getpid(), os._exit
open(out + ".before", "w").write(json.dumps(sorted(sys.modules)))
def record_and_exit(status):
    if os.getpid() == pid:
        open(out, "w").write(json.dumps(sorted(sys.modules)))
    real_exit(status)
os._exit = record_and_exit
runpy.run_module("{module}", run_name="__main__", alter_sys=True)
"""
PROBE = _PROBE.format(module="trustd.privileged.main")
CLI_PROBE = _PROBE.format(module="trustd.cli.main")  # as the rkt script runs it (entry())


def _image_id(dirs: ConfigDirs, key: str) -> str:
    """The full image ID, as the front end resolves it (the index's digest of the key)."""
    with sqlite3.connect(dirs.data / "cas" / "db" / "index.sqlite") as db:
        (digest,) = db.execute("SELECT digest FROM images WHERE key = ?", (key,)).fetchone()
    return f"sha512-{digest}"


def _root_program(payload: bytes, probe: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The entry module with ``payload`` on its request fd (under the probe when given)."""
    fd = os.memfd_create("request", 0)
    os.write(fd, payload)
    os.lseek(fd, 0, os.SEEK_SET)
    how = ["-c", PROBE, str(probe)] if probe else ["-m", "trustd.privileged.main"]
    try:
        return subprocess.run(
            [sys.executable, "-I", *how, "--request-fd", str(fd)],
            pass_fds=(fd,),
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
    finally:
        os.close(fd)


def _envelope(dirs: ConfigDirs, image_id: str, script: str) -> Envelope:
    app = App(image=image_id, exec=("/bin/sh", "-c", script))
    return Envelope(
        version=VERSION,
        command="run",
        dirs=Dirs(str(dirs.system), str(dirs.local), str(dirs.data)),
        request=Run(kind="run", pod=RunRequest(apps=(app,))),
    )


def test_the_root_program_runs_a_pod_without_loading_network_or_fetch_code(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    image_id = _image_id(shared_dirs, image)
    out = tmp_path / "modules.json"
    result = _root_program(encode(_envelope(shared_dirs, image_id, "exit 3")), out)
    assert result.returncode == 3, result.stderr
    loaded = json.loads(out.read_text())
    assert "trustd.privileged.executor.stage1" in loaded  # it really ran the pod
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert bad == []
    # The pod was measured (embedded swtpm) over _rawtpm: no ESAPI, no x509 (issue #14).
    assert "trustd.privileged.measure._rawtpm" in loaded
    assert [m for m in loaded if m.split(".")[0] in ("tpm2_pytss", "cryptography")] == []
    # Loaded only where a pod needs them (issue #14: 309 -> 278 modules for --net=none), by
    # the root program: not counting what the interpreter had before it ran.
    before = set(json.loads(Path(f"{out}.before").read_text()))
    assert [
        m
        for m in loaded
        if (m in NOT_ON_A_PLAIN_RUN or m.split(".")[0] in NOT_ON_A_PLAIN_RUN) and m not in before
    ] == []


def test_the_root_program_takes_full_image_ids_only(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    """An ID prefix, a name or a path-like key is refused before anything is read."""
    image_id = _image_id(shared_dirs, image)
    before = sorted(p.name for p in (shared_dirs.data / "pods").glob("*/*"))
    for bad in (image_id[:40], "example.com/busybox", "sha512-" + "../" * 40 + "x" * 8):
        envelope = _envelope(shared_dirs, image_id, "exit 0")
        raw = json.loads(encode(envelope))
        raw["request"]["pod"]["apps"][0]["image"] = bad
        result = _root_program(json.dumps(raw).encode())
        assert result.returncode == 254
        assert "not a full image ID" in result.stderr
    assert sorted(p.name for p in (shared_dirs.data / "pods").glob("*/*")) == before


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"", "not valid JSON"),
        (b"[1]", "expected a table"),
        (b'{"version": 1}', "missing"),
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
    ],
)
def test_malformed_requests_are_refused_with_exit_254(payload: bytes, problem: str) -> None:
    result = _root_program(payload)
    assert result.returncode == 254
    assert problem in result.stderr
    assert "Traceback" not in result.stderr


def test_image_gc_as_root_removes_trees_in_the_root_program_only(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    """The image's rendered tree and root's last-use stamp go, while the rkt process never
    loaded the code that reads pods' plans or removes trees: the root program did that."""
    image_id = _image_id(shared_dirs, image)
    uuid_file = tmp_path / "uuid"
    rkt(shared_dirs, "run", f"--uuid-file-save={uuid_file}", image, "--exec=/bin/true", check=True)
    rkt(shared_dirs, "rm", uuid_file.read_text().strip(), check=True)  # no pod references it
    tree = shared_dirs.data / "private/tree" / image_id
    stamp = shared_dirs.data / "private/used" / image_id
    assert (tree / "rootfs").is_dir() and stamp.is_file()
    out = tmp_path / "modules.json"
    gc = ("image", "gc", "--grace-period=0s")
    result = subprocess.run(
        [sys.executable, "-c", CLI_PROBE, str(out), *shared_dirs.flags(), *gc],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert f'gc: removed image "{image}"' in result.stdout
    assert not tree.exists() and not stamp.exists()
    listed = rkt(shared_dirs, "image", "list", "--no-legend", check=True).stdout
    assert [line.split()[1] for line in listed.splitlines()] == ["trustd.io/stage1/container:1"]
    loaded = json.loads(out.read_text())
    assert "trustd.cli.image" in loaded  # the probe saw the front end
    for root_side in (
        "trustd.privileged.treestore.render",
        "trustd.privileged.executor.references",
        "trustd.privileged.executor.images",
        "trustd.privileged.pod",
    ):
        assert root_side not in loaded

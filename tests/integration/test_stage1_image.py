"""The stage1 is an image (docs/adr/0018): after ``rkt run``, ``image list`` shows the
stage1 image, ``image gc`` keeps it, and the measured pod start names its image ID."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.conftest import ConfigDirs
from tests.integration.conftest import rkt
from trustd.privileged.measure import stop_embedded
from trustd.shared.imageid import store_key
from trustd.shared.stage1image import stage1_image

BY_NAME = "example.com/busybox"  # resolved through the store, as rkt's tests run images


def test_a_run_by_full_image_id_stores_nothing(shared_dirs: ConfigDirs, image: str) -> None:
    """Given only full IDs, a run touches no group-writable state (issue #10): no stage1."""
    conn = sqlite3.connect(shared_dirs.data / "cas/db/index.sqlite")
    try:
        ((digest,),) = conn.execute("SELECT digest FROM images").fetchall()
    finally:
        conn.close()
    full = f"sha512-{digest}"
    try:
        rkt(shared_dirs, "run", full, "--exec=/bin/true", check=True)
    finally:
        stop_embedded(shared_dirs.data)
    assert stage1_image("container").name not in _listed(shared_dirs)


def _listed(dirs: ConfigDirs) -> dict[str, str]:
    out = rkt(dirs, "image", "list", "--format=json", check=True).stdout
    rows = json.loads(out)
    return {row["name"].partition(":")[0]: row["id"] for row in rows}  # rkt shows name:version


def test_run_stores_the_stage1_and_gc_keeps_it(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    uuid_file = tmp_path / "uuid"
    try:
        rkt(
            shared_dirs,
            "run",
            f"--uuid-file-save={uuid_file}",
            BY_NAME,
            "--exec=/bin/true",
            check=True,
        )
        rkt(shared_dirs, "run", "--stage1-name=fly", BY_NAME, "--exec=/bin/true", check=True)
    finally:
        stop_embedded(shared_dirs.data)
    container, fly = stage1_image("container"), stage1_image("fly")
    listed = _listed(shared_dirs)
    assert container.image_id.startswith(listed[container.name])
    assert fly.image_id.startswith(listed[fly.name])
    record = json.loads(
        (
            shared_dirs.data / "pods/run" / uuid_file.read_text().strip() / "measurement.json"
        ).read_text()
    )
    assert record["measured"] is True
    rkt(shared_dirs, "gc", "--grace-period=0s", check=True)  # the pods go; their refs with them
    gc = rkt(shared_dirs, "image", "gc", "--grace-period=0s", check=True)
    assert "example.com/busybox" in gc.stdout  # the unused app image went
    after = _listed(shared_dirs)
    assert container.name in after and fly.name in after  # the stage1 images stayed
    assert "example.com/busybox" not in after


def test_rm_of_the_stage1_image_works_and_the_next_run_stores_it_again(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """rkt's image rm removes a stage1 image (rkt_image_rm_test); the next run stores it."""
    try:
        rkt(shared_dirs, "run", BY_NAME, "--exec=/bin/true", check=True)
        name = stage1_image("container").name
        removed = rkt(shared_dirs, "image", "rm", name)
        assert removed.returncode == 0, removed.stderr
        assert name not in _listed(shared_dirs)
        rkt(shared_dirs, "run", BY_NAME, "--exec=/bin/true", check=True)
    finally:
        stop_embedded(shared_dirs.data)
    assert name in _listed(shared_dirs)


# Probe: the front end as the ``rkt`` script runs it; writes its sys.modules just before it
# execs the root program (the front end's last moment), then execs it.
EXEC_PROBE = """
import json, os, runpy, sys
out, execve, fork, forks = sys.argv.pop(1), os.execve, os.fork, []
def probe(path, argv, env):
    open(out, "w").write(json.dumps({"modules": sorted(sys.modules), "forks": len(forks)}))
    execve(path, argv, env)
def counted():
    forks.append(1)
    return fork()
os.execve, os.fork = probe, counted
runpy.run_module("trustd.cli.main", run_name="__main__", alter_sys=True)
"""


def _stamped(dirs: ConfigDirs, key: str) -> str:
    conn = sqlite3.connect(dirs.data / "cas/db/index.sqlite")
    try:
        ((used,),) = conn.execute("SELECT last_used FROM images WHERE key = ?", (key,)).fetchall()
    finally:
        conn.close()
    return str(used)


def test_a_later_run_finds_the_stored_stage1_without_the_fetch_side(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    """Once the stage1 is stored, a run by image ID (as ``fetch --full`` prints it) only
    stamps its last use, in the one index-only lookup child that also resolves the image:
    the front end forks once and never loads the fetch side's modules (issue #14)."""
    key = store_key(stage1_image("container").image_id)
    out = tmp_path / "modules.json"
    try:
        rkt(shared_dirs, "run", image, "--exec=/bin/true", check=True)  # stores it
        first = _stamped(shared_dirs, key)
        run = ("run", image, "--exec=/bin/true")
        result = subprocess.run(
            [sys.executable, "-c", EXEC_PROBE, str(out), *shared_dirs.flags(), *run],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
    finally:
        stop_embedded(shared_dirs.data)
    assert result.returncode == 0, result.stderr
    assert _stamped(shared_dirs, key) > first  # the lookup child stamped it
    probed = json.loads(out.read_text())
    loaded = probed["modules"]
    assert "trustd.cli.run" in loaded  # the probe saw the front end
    assert probed["forks"] == 1  # one lookup child: the image's ID and the stage1's stamp
    for fetch_side in ("trustd.unprivileged.fetch.workflow", "trustd.unprivileged.fetch.stage1"):
        assert fetch_side not in loaded
    assert list(_listed(shared_dirs)).count(stage1_image("container").name) == 1


def test_a_run_whose_second_id_is_unknown_fails_as_before_and_stamps_no_stage1(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """The one lookup child stops at the first ID it cannot resolve; that ID's own lookup
    then gives rkt's error, exit 254, and the stage1's row is not stamped."""
    key = store_key(stage1_image("container").image_id)
    try:
        rkt(shared_dirs, "run", image, "--exec=/bin/true", check=True)  # stores the stage1
        before = _stamped(shared_dirs, key)
        failed = rkt(shared_dirs, "run", image, "sha512-0000", "--exec=/bin/true")
    finally:
        stop_embedded(shared_dirs.data)
    assert failed.returncode == 254
    assert "run: no image IDs found for 'sha512-0000'" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert _stamped(shared_dirs, key) == before

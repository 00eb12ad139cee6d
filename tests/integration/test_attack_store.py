"""A hostile member of group rkt against root's use of the shared store (issue #10).

Each attack is made by a real unprivileged user in group rkt (``setpriv``), then root runs
the ordinary command. Each is refused, or has no effect, and the store, root's state and the
target are unchanged: compared as a snapshot (modes, owners, link targets and contents, no
symlink followed) before and after.
"""

from __future__ import annotations

import json
import pwd
import sqlite3
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests._busybox import busybox_aci
from tests.conftest import ConfigDirs, Keys
from tests.integration._attacker import Snapshot, member, snapshot
from tests.integration._attest import attest_quote
from tests.integration.conftest import RKT, app_output, rkt
from trustd.privileged.measure import stop_embedded
from trustd.shared.stage1image import stage1_image, stage1_image_ids

INDEX = ("db",)  # the front end updates an image's last use there (unprivileged): not compared


def sql(dirs: ConfigDirs, statement: str) -> None:
    member("sqlite3", str(dirs.data / "cas/db/index.sqlite"), statement)


def row(dirs: ConfigDirs) -> sqlite3.Row:
    """The one image row (read by the test, as the group could)."""
    conn = sqlite3.connect(dirs.data / "cas/db/index.sqlite")
    conn.row_factory = sqlite3.Row
    try:
        # the app's row; a run also stores the stage1 image (ADR 0018), which has its own
        (found,) = conn.execute(
            "SELECT * FROM images WHERE name NOT LIKE 'trustd.io/stage1/%'"
        ).fetchall()
    finally:
        conn.close()
    assert isinstance(found, sqlite3.Row)
    return found


@pytest.fixture
def victim() -> Iterator[Path]:
    """A root-owned directory outside the store, 0700 root:root, with a file in it."""
    base = Path(tempfile.mkdtemp(prefix="trustd-victim-", dir="/tmp"))
    (base / "secret").write_bytes(b"root's\n")
    yield base
    subprocess.run(["rm", "-rf", str(base)], check=False)


def run_sh(
    dirs: ConfigDirs, image: str, script: str, *flags: str
) -> subprocess.CompletedProcess[str]:
    return rkt(dirs, *flags, "run", image, "--exec=/bin/sh", "--", "-c", script)


def full_id(dirs: ConfigDirs) -> str:
    return "sha512-" + str(row(dirs)["digest"])


def test_an_index_key_with_dotdot_is_never_a_path(
    shared_dirs: ConfigDirs, image: str, victim: Path
) -> None:
    """Rows whose key is not exactly the digest's sha512-<64 hex> are refused: listings skip
    them with a warning, and gc builds no path from them."""
    hostile = "sha512-" + "../" * 12 + str(victim).lstrip("/")
    sql(
        shared_dirs,
        f"INSERT INTO images SELECT '{hostile}', digest, name, labels, "  # noqa: S608
        "'2000-01-01T00:00:00+00:00', '2000-01-01T00:00:00+00:00', size, uncompressed_size, "
        "source, provenance FROM images",
    )
    before = snapshot(victim)
    listed = rkt(shared_dirs, "image", "list", check=True)
    assert "store index row refused: bad image key" in listed.stderr
    assert rkt(shared_dirs, "image", "gc", "--grace-period=0s", check=True).returncode == 0
    refused = rkt(shared_dirs, "run", hostile, "--exec=/bin/true")
    assert refused.returncode == 254
    assert snapshot(victim) == before


def test_a_planted_cas_tree_is_never_run(shared_dirs: ConfigDirs, image: str) -> None:
    """The old tree store inside the group-writable cas is never read: root renders into
    its own private/tree from verified bytes."""
    key = full_id(shared_dirs)
    for name in (key, image):
        planted = shared_dirs.data / "cas/tree" / name
        member("mkdir", "-p", str(planted / "rootfs"))
        member("sh", "-c", f"echo planted > {planted}/rootfs/planted")
        marker = {"digest": key[7:], "signers": [], "insecure": False, "rendered_at": ""}
        member("sh", "-c", f"echo '{json.dumps(marker)}' > {planted}/rendered")
    result = run_sh(shared_dirs, image, "cat /planted 2>/dev/null || echo clean")
    assert result.returncode == 0, result.stderr
    assert app_output(result.stdout).split() == ["clean"]
    assert (shared_dirs.data / "private/tree" / key / "rootfs/bin/sh").exists()


@pytest.mark.parametrize("what", ["cas/tmp", "cas/lock", "cas/imagelocks", "cas/blob"])
def test_symlinks_in_the_store_are_refused_and_never_followed(
    shared_dirs: ConfigDirs, image: str, victim: Path, tmp_path: Path, what: str
) -> None:
    """Root's set-up of the store (fetch, gc) opens each store directory and file without
    following a symlink; one in the way is refused, naming it; the target keeps its owner
    and mode."""
    target = victim / "secret" if what == "cas/lock" else victim
    path = shared_dirs.data / what
    member("mv", str(path), str(path) + ".aside")
    member("ln", "-s", str(target), str(path))
    before = snapshot(victim), victim.stat()
    other = busybox_aci(tmp_path / "other.aci", "example.com/other")
    fetched = rkt(shared_dirs, "--insecure-options=image", "fetch", str(other))
    assert fetched.returncode == 254
    assert what.rsplit("/", maxsplit=1)[-1] in fetched.stderr
    gc = rkt(shared_dirs, "image", "gc", "--grace-period=0s")
    assert gc.returncode == 254
    assert "symlink" in gc.stderr
    after = snapshot(victim), victim.stat()
    assert after[0] == before[0]
    assert (after[1].st_uid, after[1].st_gid, after[1].st_mode) == (
        before[1].st_uid,
        before[1].st_gid,
        before[1].st_mode,
    )


def test_gc_removes_nothing_through_a_planted_blob_link(
    shared_dirs: ConfigDirs, image: str, victim: Path
) -> None:
    """Blob and index removal run with the group's rights; root removes only its own trees,
    by fd, named by the exact key grammar."""
    key = full_id(shared_dirs)
    assert run_sh(shared_dirs, image, "true").returncode == 0  # a tree is rendered
    shard = shared_dirs.data / "cas/blob/sha512" / key[7:9]
    member("mv", str(shard), str(shard) + ".aside")
    member("ln", "-s", str(victim), str(shard))
    sql(shared_dirs, "UPDATE images SET last_used = '2000-01-01T00:00:00+00:00'")
    member("ln", "-s", str(victim), str(shared_dirs.data / "cas/tmp/import-evil"))
    before = snapshot(victim)
    rkt(shared_dirs, "image", "gc", "--grace-period=0s")
    assert snapshot(victim) == before
    assert victim.stat().st_uid == 0 and stat.S_IMODE(victim.stat().st_mode) == 0o700


def test_root_never_writes_the_groups_decision_log(
    shared_dirs: ConfigDirs, image: str, victim: Path
) -> None:
    log = shared_dirs.data / "policy/decisions.jsonl"
    member("mv", str(log), str(log) + ".aside")
    member("ln", "-s", str(victim / "secret"), str(log))
    before = snapshot(victim)
    assert run_sh(shared_dirs, image, "true").returncode == 0
    assert snapshot(victim) == before
    root_log = shared_dirs.data / "private/decisions.jsonl"
    assert json.loads(root_log.read_text().splitlines()[-1])["decision"]["gate"] == "run"


def test_a_cached_insecure_render_needs_the_opt_out_whatever_the_index_says(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    unsigned = busybox_aci(tmp_path / "u.aci", "example.com/unsigned")
    short = rkt(
        shared_dirs, "--insecure-options=image", "fetch", "--full", str(unsigned), check=True
    ).stdout.strip()
    assert run_sh(shared_dirs, short, "true", "--insecure-options=image").returncode == 0
    sql(
        shared_dirs,
        "UPDATE images SET provenance = (SELECT provenance FROM images WHERE key = "  # noqa: S608
        f"'{image}') WHERE key = '{short}'",
    )
    cas = shared_dirs.data / "cas"
    before = snapshot(cas, skip=INDEX), snapshot(shared_dirs.data / "private/tree")
    refused = run_sh(shared_dirs, short, "true")
    assert refused.returncode == 254
    assert "without signature verification" in refused.stderr
    assert (snapshot(cas, skip=INDEX), snapshot(shared_dirs.data / "private/tree")) == before


def test_a_blob_swapped_after_the_fetch_is_refused(shared_dirs: ConfigDirs, image: str) -> None:
    evil = busybox_aci(
        shared_dirs.data.parent / "evil.aci",
        "example.com/busybox",
        files={"rootfs/bin/evil": b"#!/bin/sh\necho owned\n"},
    )
    evil.chmod(0o644)
    key = full_id(shared_dirs)
    blob = shared_dirs.data / "cas/blob/sha512" / key[7:9] / image
    member("cp", str(evil), str(blob / "new.aci"))
    member("mv", "-f", str(blob / "new.aci"), str(blob / "image.aci"))
    before = snapshot(shared_dirs.data / "cas", skip=INDEX)
    refused = run_sh(shared_dirs, image, "true")
    assert refused.returncode == 254
    assert "not the requested" in refused.stderr
    assert _apart_from_stage1(snapshot(shared_dirs.data / "cas", skip=INDEX)) == before
    assert not (shared_dirs.data / "private/tree" / key).exists()
    assert list((shared_dirs.data / "private/tree").iterdir()) == []


def _apart_from_stage1(snap: Snapshot) -> Snapshot:
    """``snap`` without what storing the stage1 image (ADR 0018) adds: its blob, its image
    lock and a shard dir made for it."""
    ids = stage1_image_ids()
    keys = [i[:71] for i in ids]
    shards = {f"blob/sha512/{i[7:9]}" for i in ids}
    return {k: v for k, v in snap.items() if not any(key in k for key in keys) and k not in shards}


def _tree(dirs: ConfigDirs) -> Path:
    return dirs.data / "private/tree" / full_id(dirs)


def test_gc_keeps_what_a_prepared_pod_needs_even_when_imported_long_ago(
    shared_dirs: ConfigDirs, image: str
) -> None:
    uuid = rkt(shared_dirs, "prepare", image, "--exec=/bin/true", check=True).stdout.strip()
    long_ago = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    sql(shared_dirs, f"UPDATE images SET import_time = '{long_ago}', last_used = '{long_ago}'")  # noqa: S608
    stamp = shared_dirs.data / "private/used" / full_id(shared_dirs)
    stamp.write_text(long_ago)  # as if prepared three days ago
    before = snapshot(shared_dirs.data / "cas/blob"), snapshot(_tree(shared_dirs))
    assert rkt(shared_dirs, "image", "gc", check=True).stdout == ""
    assert (snapshot(shared_dirs.data / "cas/blob"), snapshot(_tree(shared_dirs))) == before
    refused = rkt(shared_dirs, "image", "rm", image)
    assert refused.returncode == 254 and uuid in refused.stderr
    assert rkt(shared_dirs, "run-prepared", uuid).returncode == 0  # and it still runs


def test_gc_while_a_pod_runs_keeps_its_tree(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    uuid_file = tmp_path / "uuid"
    running = subprocess.Popen(
        [
            RKT,
            *shared_dirs.flags(),
            "run",
            f"--uuid-file-save={uuid_file}",
            "--volume",
            f"gate,kind=host,source={gate}",
            image,
            "--mount",
            "volume=gate,target=/gate",
            "--exec=/bin/sh",
            "--",
            "-c",
            "while [ ! -e /gate/go ]; do sleep 0.05; done",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        while not (uuid_file.exists() and uuid_file.read_text().strip()):
            assert running.poll() is None, running.communicate()
        uuid = uuid_file.read_text().strip()
        while "state=running" not in rkt(shared_dirs, "status", uuid).stdout:
            assert running.poll() is None, running.communicate()
        sql(shared_dirs, "UPDATE images SET last_used = '2000-01-01T00:00:00+00:00'")
        (shared_dirs.data / "private/used" / full_id(shared_dirs)).write_text(
            "2000-01-01T00:00:00+00:00"
        )
        before = snapshot(_tree(shared_dirs))
        assert rkt(shared_dirs, "image", "gc", "--grace-period=0s", check=True).stdout == ""
        assert snapshot(_tree(shared_dirs)) == before
    finally:
        (gate / "go").write_text("")
        running.communicate(timeout=120)
    assert running.returncode == 0


def test_prepare_and_run_stamp_last_use_and_gc_counts_from_it(
    shared_dirs: ConfigDirs, image: str
) -> None:
    long_ago = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    sql(shared_dirs, f"UPDATE images SET import_time = '{long_ago}', last_used = '{long_ago}'")  # noqa: S608
    started = datetime.now(UTC).replace(microsecond=0)
    assert run_sh(shared_dirs, image, "true").returncode == 0
    stamp = shared_dirs.data / "private/used" / full_id(shared_dirs)
    assert datetime.fromisoformat(stamp.read_text()) >= started
    assert (stamp.stat().st_uid, stat.S_IMODE(stamp.stat().st_mode)) == (0, 0o600)
    assert rkt(shared_dirs, "gc", "--grace-period=0s", check=True).returncode == 0  # the pod
    sql(shared_dirs, f"UPDATE images SET last_used = '{long_ago}'")  # noqa: S608 - the group's say
    assert rkt(shared_dirs, "image", "gc", check=True).stdout == ""  # root's stamp: used now
    listed = json.loads(rkt(shared_dirs, "image", "list", "--format=json").stdout)
    assert [r["name"] for r in listed if not r["name"].startswith("trustd.io/stage1/")] == [
        "example.com/busybox:1.0.0"
    ]
    stamp.write_text(long_ago)
    removed = rkt(shared_dirs, "image", "gc", check=True).stdout
    assert f'gc: removed image "{image}"' in removed
    assert not _tree_exists(shared_dirs, stamp.name) and not stamp.exists()


def _tree_exists(dirs: ConfigDirs, full: str) -> bool:
    return (dirs.data / "private/tree" / full).exists()


def test_a_data_dir_the_group_can_write_is_refused(shared_dirs: ConfigDirs, image: str) -> None:
    shared_dirs.data.chmod(0o2770)
    refused = run_sh(shared_dirs, image, "true")
    assert refused.returncode == 254
    assert "not writable by group or others" in refused.stderr


def test_an_index_row_renamed_to_the_requested_name_is_refused(
    shared_dirs: ConfigDirs, image: str, keys: Keys, tmp_path: Path
) -> None:
    """The index maps a name to an image; root checks the verified manifest says that name."""
    other = busybox_aci(tmp_path / "other.aci", "example.com/other")
    keys.gpg.sign(keys.good, other, tmp_path / "other.aci.asc")
    rkt(
        shared_dirs, "fetch", str(other), "--signature", str(tmp_path / "other.aci.asc"), check=True
    )
    assert run_sh(shared_dirs, "example.com/busybox", "true").returncode == 0
    sql(
        shared_dirs,
        "UPDATE images SET name = 'example.com/busybox', import_time = '2999-01-01T00:00:00+00:00'"
        " WHERE name = 'example.com/other'",
    )
    before = snapshot(shared_dirs.data / "cas", skip=INDEX)
    refused = run_sh(shared_dirs, "example.com/busybox", "true")
    assert refused.returncode == 254
    assert "not the requested example.com/busybox" in refused.stderr
    assert snapshot(shared_dirs.data / "cas", skip=INDEX) == before


@pytest.mark.parametrize("legacy", ["root's directory", "the group's symlink"])
def test_gc_removes_the_old_cas_tree_only_when_it_is_roots(
    shared_dirs: ConfigDirs, image: str, victim: Path, legacy: str
) -> None:
    tree = shared_dirs.data / "cas/tree"
    if legacy == "root's directory":  # as an older trustd left it
        (tree / "sha512-old" / "rootfs").mkdir(parents=True, mode=0o700)
        tree.chmod(0o2700)
    else:
        member("ln", "-s", str(victim), str(tree))
    before = snapshot(victim)
    assert rkt(shared_dirs, "image", "gc", check=True).returncode == 0
    assert tree.is_symlink() == (legacy != "root's directory")
    assert tree.exists() == (legacy != "root's directory")
    assert snapshot(victim) == before


def test_gc_keeps_the_old_cas_tree_while_an_old_pod_uses_it(
    shared_dirs: ConfigDirs, image: str
) -> None:
    uuid = rkt(shared_dirs, "prepare", image, "--exec=/bin/true", check=True).stdout.strip()
    old = shared_dirs.data / "cas/tree" / image
    (old / "rootfs").mkdir(parents=True)
    plan_path = next(shared_dirs.data.glob(f"pods/prepared/{uuid}/**/plan.json"))
    plan = json.loads(plan_path.read_text())
    plan["apps"][0]["tree"] = str(old)  # as an older trustd prepared it
    plan_path.write_text(json.dumps(plan))
    assert rkt(shared_dirs, "image", "gc", check=True).returncode == 0
    assert (old / "rootfs").is_dir()
    assert rkt(shared_dirs, "rm", uuid, check=True).returncode == 0
    assert rkt(shared_dirs, "image", "gc", check=True).returncode == 0
    assert not old.parent.exists()


def test_a_swapped_stage1_image_is_never_what_root_measures(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    """The stored stage1 image (ADR 0018) is for listing only: root derives the stage1 and
    its image ID from the package data, so a member's swapped copy changes nothing."""
    stage1 = stage1_image("container")
    try:
        rkt(shared_dirs, "run", "example.com/busybox", "--exec=/bin/true", check=True)
        key = stage1.image_id
        (blob,) = (shared_dirs.data / "cas/blob/sha512" / key[7:9]).glob(key[:39] + "*")
        evil = busybox_aci(shared_dirs.data.parent / "evil-stage1.aci", stage1.name)
        evil.chmod(0o644)
        member("cp", str(evil), str(blob / "new.aci"))
        member("mv", "-f", str(blob / "new.aci"), str(blob / "image.aci"))
        uuid_file = tmp_path / "uuid"
        ran = rkt(shared_dirs, "run", f"--uuid-file-save={uuid_file}", image, "--exec=/bin/true")
        assert ran.returncode == 0, ran.stderr
        quote = attest_quote(shared_dirs, tmp_path, "5eed0123456789abcdef")
        starts = quote.report(shared_dirs)["pod_starts"]
    finally:
        stop_embedded(shared_dirs.data)
    (pod,) = [s for s in starts if s["pod"] == uuid_file.read_text().strip()]
    (event,) = [e["data"] for e in pod["events"] if e["kind"] == "stage1"]
    assert event["image_id"] == stage1.image_id
    assert event["descriptor_digest"] == stage1.descriptor_digest


def test_root_lists_the_index_only_with_the_fetch_identitys_rights(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """As root, ``rkt image list`` reads the index with the fetch identity's rights (issue
    #14: the rkt process itself drops for good, no child): an index only the member may read,
    put in the index's place, root could read, the listing cannot."""
    index = shared_dirs.data / "cas/db/index.sqlite"
    listed = rkt(shared_dirs, "image", "list", "--no-legend", check=True)
    assert image[:19] in listed.stdout
    # the member puts a copy only it may read in the index's place (the group writes cas/db)
    member(
        "sh", "-c", 'cp "$1" "$1.new" && chmod 0600 "$1.new" && mv "$1.new" "$1"', "-", str(index)
    )
    assert pwd.getpwuid(index.stat().st_uid).pw_name != "rkt-fetch"
    refused = rkt(shared_dirs, "image", "list", "--no-legend")
    assert refused.returncode == 254
    assert image[:19] not in refused.stdout
    assert "index.sqlite" in refused.stderr
    member("chmod", "0660", str(index))
    assert image[:19] in rkt(shared_dirs, "image", "list", "--no-legend", check=True).stdout

"""Seventh red-team pass: what root still read of the group's store by path or without a
bound on 2026-12-03, attacked as a real member of group rkt (``trustd-it-user``, through an
unprivileged ``/bin/sh``).

Each test makes the attack, then asserts what trustd guarantees, counting outcomes (never
timing them). The docstrings say what was wrong.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._busybox import busybox_aci
from tests._policy import install_policy
from tests.conftest import ConfigDirs, Keys
from tests.integration._attacker import member, plant_endless_trigger, rkt_unhung
from tests.integration.conftest import NAME as BUSYBOX
from tests.integration.conftest import RKT, ensure_user, require_root, rkt, trust_good_key
from trustd.shared.errors import LocalStateError
from trustd.unprivileged.privsep import fetch_identity, run_as
from trustd.unprivileged.privsep.drop import INDEX_PRELOAD, LOOKUP_DEADLINE


def _blob_dir(dirs: ConfigDirs) -> Path:
    (found,) = (dirs.data / "cas/blob/sha512").glob("*/sha512-*")
    return found


def _private_bytes(dirs: ConfigDirs) -> int:
    """Bytes root holds under ``private`` (its renders and copies)."""
    used = subprocess.run(
        ["du", "-s", "--block-size=1", str(dirs.data / "private")],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(used.stdout.split()[0])


def _replace(blob: Path, script: str) -> None:
    """As the member: a copy of the stored archive, changed by ``script`` (``$1`` names the
    copy), moved over the original (the blob dir is the group's)."""
    aci = blob / "image.aci"
    member("/bin/sh", "-c", f'cat "$0" > "$0.x" && {script} && mv -f "$0.x" "$0"', str(aci))


def test_a_sparse_archive_is_refused_before_root_copies_it(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """Root copies ``image.aci`` into its own space before it hashes a byte, up to 16 GiB. A
    member's ``truncate -s 12G`` costs the group a few blocks; root's copy wrote 12 GiB of
    zeros into ``private`` (filling the disk) before the digest refused it. A stored archive
    with a hole is now refused before the copy: a fetch writes it front to back."""
    used = _private_bytes(shared_dirs)
    _replace(_blob_dir(shared_dirs), 'truncate -s 12G "$0.x"')
    refused = rkt(shared_dirs, "run", "--net=none", "--stage1-name=fly", image)
    assert refused.returncode == 254, refused.stderr
    assert "is sparse" in refused.stderr and "rkt image rm" in refused.stderr
    assert _private_bytes(shared_dirs) < used + (16 << 20)  # no copy of it was made


@contextlib.contextmanager
def _small_disk_dirs(size: str) -> Iterator[ConfigDirs]:
    """Config dirs like ``shared_dirs``, with the data dir on a tmpfs of ``size``."""
    base = Path(tempfile.mkdtemp(prefix="trustd-it-", dir="/tmp"))
    base.chmod(0o755)
    dirs = ConfigDirs(base / "usr-lib-rkt", base / "etc-rkt", base / "var-lib-rkt")
    for d in (dirs.system, dirs.local, dirs.data):
        d.mkdir(mode=0o755)
    install_policy(dirs.system)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(dirs.data)],
        check=True,
    )
    try:
        yield dirs
    finally:
        subprocess.run(["umount", "-l", str(dirs.data)], check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_an_archive_larger_than_roots_free_space_is_refused_before_the_copy(
    keys: Keys, tmp_path: Path
) -> None:
    """The dense variant: the member grows the stored archive with real bytes, to more than
    is left free. Root's copy filled the filesystem (the store's and root's ``private``
    share it) before the digest refused it; the copy is now refused first, with the sizes."""
    with _small_disk_dirs("96m") as dirs:
        subprocess.run(["bash", "scripts/setup-groups.sh"], check=True)
        aci = busybox_aci(tmp_path / "bb.aci", BUSYBOX)
        keys.gpg.sign(keys.good, aci, tmp_path / "bb.aci.asc")
        trust_good_key(dirs, keys, tmp_path)
        image = rkt(dirs, "fetch", "--full", str(aci), check=True).stdout.strip()
        _replace(_blob_dir(dirs), 'head -c 60000000 /dev/urandom >> "$0.x"')
        used = _private_bytes(dirs)
        refused = rkt(dirs, "run", "--net=none", "--stage1-name=fly", image)
        assert refused.returncode == 254, refused.stderr
        assert "bytes free there" in refused.stderr, refused.stderr
        assert _private_bytes(dirs) < used + (16 << 20)


@pytest.mark.parametrize(
    ("plant", "reason"),
    [
        ('rm -f "$0" && mkfifo -m 0660 "$0"', "not a regular file"),
        ('rm -f "$0" && ln -s /etc/passwd "$0"', "symbolic links"),
        ('head -c 1000 "$0" > "$0.x" && mv -f "$0.x" "$0"', "stored archive"),
    ],
    ids=["fifo", "symlink", "cut short"],
)
def test_cat_manifest_reads_the_stored_archive_without_following_or_waiting(
    shared_dirs: ConfigDirs, image: str, plant: str, reason: str
) -> None:
    """``rkt image cat-manifest`` read ``<blob dir>/manifest`` by path, whole: a FIFO there
    hung it (as root, until the child was killed), a symlink was followed, a file of any size
    was read into memory. It now reads the manifest from the stored archive in the pass that
    hashes it (red team 8: the ``manifest`` file is not bound to the ID), opened beneath the
    blob dir with no symlink followed and without waiting: a FIFO, a link or an archive that
    is not the image's is refused with the reason, and nothing of it is shown."""
    member("/bin/sh", "-c", plant, str(_blob_dir(shared_dirs) / "image.aci"))
    refused = rkt_unhung(shared_dirs, "image", "cat-manifest", image, within=LOOKUP_DEADLINE)
    assert refused.returncode == 254, refused.stderr
    assert reason in refused.stderr and "rkt image rm" in refused.stderr
    assert "root:" not in refused.stdout and refused.stdout.strip() == ""


@pytest.mark.parametrize("verb", [("image", "rm"), ("image", "gc", "--grace-period=0s")])
def test_an_endless_trigger_cannot_hang_image_rm_or_gc(
    shared_dirs: ConfigDirs, image: str, verb: tuple[str, ...]
) -> None:
    """Root's ``rkt image rm`` and ``gc`` delete index rows in a child as the fetch
    identity, which root waited for with no bound: a member's trigger on DELETE whose body
    never ends hung them for good (the lookup's deadline covered lookups only). Every index
    connection now has a budget of SQLite steps; past it the statement is interrupted and
    rolled back, and the verb refused with the reason. The image is still there."""
    plant_endless_trigger(shared_dirs, "DELETE")
    args = (*verb, image) if verb[-1] == "rm" else verb
    refused = rkt_unhung(shared_dirs, *args, within=300)
    assert refused.returncode == 254, refused.stderr
    assert "SQLite steps" in refused.stderr and "trigger" in refused.stderr
    assert (_blob_dir(shared_dirs) / "image.aci").is_file()
    listed = rkt(shared_dirs, "image", "list", "--no-legend", "--full")
    assert image in listed.stdout


def test_the_lookup_deadline_still_ends_a_child_that_waits_in_no_sqlite_step() -> None:
    """The step budget stops a trigger; the lookup child's deadline stays for a wait that is
    no SQLite step (a file the child blocks on). A child that never answers is killed at the
    deadline and the lookup refused; the child is gone (reaped, not left running)."""
    require_root()

    def work() -> str:
        time.sleep(600)
        return "never"

    with pytest.raises(LocalStateError, match="did not answer within 1 s"):
        run_as(fetch_identity(), work, inherit_fds=False, base=INDEX_PRELOAD, deadline=1)
    assert _children() == []


def _children() -> list[int]:
    """PIDs whose parent is this process (field 4 of /proc/PID/stat, after the name)."""
    mine, found = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == mine:
                found.append(int(stat.parent.name))
    return found


_FAKE_POD = """
set -e
pod="$1/pods/run/$2"
mkdir -p "$pod/private" "$pod/apps/victim" "$1/pods/prepared"
echo "$3" > "$pod/apps/victim/pid"
awk '{print $22}' "/proc/$3/stat" > "$pod/apps/victim/starttime"
echo '{}' > "$pod/plan.json"
"""


def test_rkt_stop_refuses_a_data_dir_another_user_could_rewrite(tmp_path: Path) -> None:
    """``rkt stop`` signals the processes named by PID files under the pod's directory, found
    by path. A local user who owns a ``--dir`` root is asked to stop in writes a pod there
    whose app PID and start time are a root process of their choosing. Checked, and held:
    the root program refuses a data directory that is not root's (and every directory above
    it) before any verb, so those files are never read. The victim lives."""
    require_root()
    user = ensure_user()
    base = Path(tempfile.mkdtemp(prefix="trustd-it-", dir="/tmp"))
    victim = subprocess.Popen(["sleep", "600"])  # a root process the user names
    try:
        base.chmod(0o755)
        data = base / "data"
        data.mkdir()
        shutil.chown(data, user)
        uuid = "5e1f5e1f-0000-4000-8000-000000000001"
        member("/bin/sh", "-c", _FAKE_POD, "sh", str(data), uuid, str(victim.pid))
        refused = subprocess.run(
            [RKT, f"--dir={data}", "stop", "--force", uuid],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert refused.returncode == 254, refused.stderr
        assert "owned by" in refused.stderr, refused.stderr
        assert victim.poll() is None  # not signalled
    finally:
        victim.kill()
        victim.wait()
        shutil.rmtree(base, ignore_errors=True)

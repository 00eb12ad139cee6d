"""Third red-team pass, continued (issue #16 follow-up): ``--private-users`` uid ranges, root's
docker conversion from the stored layers, and what an app or a member leaves for root's rm and
gc, attacked as a real member of group rkt (``trustd-it-user``) or as any local user. The
network and metadata-service half is ``test_attack_redteam3.py``; each test here held, or was
fixed in this pass (the docstring says what was wrong)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import ConfigDirs
from tests.integration._attacker import as_member, member, member_popen, saved_uuid, stop
from tests.integration.conftest import RKT, rkt

RANGE = 65536


# --- 4. --private-users: uid ranges across data dirs and other user namespaces -------------

_HOLD = "import sys, time; sys.stdin.read(); time.sleep(0)"


@contextlib.contextmanager
def _userns_mapping(lines: list[tuple[int, int, int]]) -> Iterator[int]:
    """A live user namespace (a process in it) whose uid_map and gid_map are ``lines``
    (inner, outer, count), as another data dir's pod or another runtime's container has."""
    holder = subprocess.Popen(
        ["unshare", "--user", "/usr/bin/python3", "-c", _HOLD],
        stdin=subprocess.PIPE,
        text=True,
    )
    try:
        own = Path("/proc/self/ns/user").stat().st_ino
        for _ in range(200):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{holder.pid}/ns/user").stat().st_ino != own:
                    break
            time.sleep(0.02)
        text = "".join(f"{i} {o} {c}\n" for i, o, c in lines)
        for name in ("uid_map", "gid_map"):
            Path(f"/proc/{holder.pid}/{name}").write_text(text)
        yield holder.pid
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def _all_blocks_but(keep: int) -> list[tuple[int, int, int]]:
    """uid_map lines covering every block trustd allocates from (16 .. 0xFFFD) but ``keep``."""
    first, last = 16, 0xFFFE
    below = (keep - first) * RANGE
    return [(0, first * RANGE, below), (below, (keep + 1) * RANGE, (last - keep - 1) * RANGE)]


def _free_block() -> int:
    """A block no live user namespace and no account or delegation touches now."""
    from trustd.privileged.executor import _userns  # noqa: PLC0415

    taken = _userns._blocks(_userns._live_mappings()) | _userns._blocks(
        _userns._ids_in_use(Path("/etc"))
    )
    return next(b for b in range(40000, 0xFFFD) if b not in taken)


def _ranges(dirs: ConfigDirs) -> dict[str, int]:
    path = dirs.data / "private/userns/ranges.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_a_pods_uid_range_is_never_one_a_live_user_namespace_maps(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """The range registry is per data dir (``<dir>/private/userns``), so a pod of another
    data dir, or another runtime's container, could hold the very range prepare picked:
    two pods' roots would then be the same host uid (each could read the other's
    ``/proc/PID/environ``, signal it, and own the other's files). Was: nothing outside the
    data dir's registry was looked at. Now prepare skips what any live user namespace maps,
    and a pod start refuses a range a live one took after prepare.

    Here a live user namespace maps every block but one: prepare must pick that one; then a
    second one maps that block too, and ``run-prepared`` must refuse before any app runs
    (exit 254, the reason and the fix named: the stage1 checks just before it makes the
    pod's user namespace)."""
    keep = _free_block()
    with _userns_mapping(_all_blocks_but(keep)):
        uuid = rkt(
            shared_dirs,
            "prepare",
            "--private-users",
            image,
            "--exec=/bin/echo",
            "--",
            "RAN",
            check=True,
        ).stdout.strip()
    assert _ranges(shared_dirs)[uuid] == keep * RANGE
    with _userns_mapping([(0, keep * RANGE + 100, 1)]):  # one uid of the range is enough
        ran = rkt(shared_dirs, "run-prepared", uuid)
    assert ran.returncode == 254, ran.stdout + ran.stderr
    assert "is in use by another user namespace" in ran.stderr, ran.stderr
    assert "rkt rm" in ran.stderr and "RAN" not in ran.stdout


def test_a_member_cannot_choose_or_reach_the_uid_range_registry(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """The registry, its lock and its directory are root's (0700/0600): a member can neither
    read which ranges pods hold nor plant an entry that makes a range look free or taken."""
    uuid = rkt(
        shared_dirs, "prepare", "--private-users", image, "--exec=/bin/true", check=True
    ).stdout.strip()
    registry = shared_dirs.data / "private" / "userns"
    for path in (registry, registry / "ranges.json", registry / "ranges.lock"):
        st = path.stat()
        assert st.st_uid == 0 and st.st_mode & 0o077 == 0, path
    tried = as_member(
        "/bin/sh",
        "-c",
        f"cat {registry}/ranges.json; echo '{{}}' > {registry}/ranges.json; "
        f"ln -s /etc/passwd {registry}/ranges.tmp",
    )
    assert tried.returncode != 0 and uuid not in tried.stdout
    assert uuid in _ranges(shared_dirs) and not (registry / "ranges.tmp").exists()
    rkt(shared_dirs, "rm", uuid, check=True)
    assert uuid not in _ranges(shared_dirs)


# --- 5. root's docker conversion from the stored layers ----------------------------------

from tests.integration._registry import needs_registry_tools  # noqa: E402
from tests.integration._signed import (  # noqa: E402
    Signed,
    signed,  # noqa: F401 - the module's signed-registry fixture
)
from tests.integration._signed import fetch as _fetch  # noqa: E402
from tests.integration._signed import trustd_dirs as _trustd_dirs  # noqa: E402


def _kept_blobs(dirs: ConfigDirs, image_id: str) -> list[Path]:
    """The config and layers kept with a signed docker image, smallest first."""
    from trustd.shared.store import ImageStore  # noqa: PLC0415

    blob = ImageStore(dirs.data).layout.blob_dir(image_id[: len("sha512-") + 64])
    kept = [p for p in blob.iterdir() if p.name.startswith("sha256-")]
    assert len(kept) >= 2
    return sorted(kept, key=lambda p: p.stat().st_size)


def _rendered(dirs: ConfigDirs) -> list[str]:
    tree = dirs.data / "private" / "tree"
    return sorted(p.name for p in tree.iterdir()) if tree.is_dir() else []


@needs_registry_tools
def test_a_stored_layer_replaced_by_a_link_or_a_fifo_is_neither_followed_nor_waited_on(
    signed: Signed,  # noqa: F811
    shared_dirs: ConfigDirs,
    tmp_path: Path,
) -> None:
    """A member of group rkt replaces the signed image's kept config with a FIFO (a reader
    that opens it blocks until a writer comes) and its layer with a symlink to a genuine
    copy of the same bytes (it would hash right). Root's conversion opens neither through
    the link nor waits on the FIFO: it refuses at once, with the fix, and renders nothing."""
    _trustd_dirs(signed, shared_dirs, tmp_path)
    good = _fetch(signed, shared_dirs, "ns/good:v1", "--insecure-options=http")
    config, *_, layer = _kept_blobs(shared_dirs, good)
    copy = layer.with_name(".copy")  # beside it: the member may write there
    before = _rendered(shared_dirs)
    member("/bin/sh", "-c", f"cp {layer} {copy} && ln -sf {copy} {layer}.l && mv {layer}.l {layer}")
    ran = rkt(shared_dirs, "run", good, "--exec=/bin/echo")
    assert ran.returncode == 254, ran.stderr
    assert "rkt image rm" in ran.stderr and _rendered(shared_dirs) == before
    member("/bin/sh", "-c", f"mv -f {copy} {layer} && rm -f {config} && mkfifo -m 666 {config}")
    ran = rkt(shared_dirs, "run", good, "--exec=/bin/echo")  # an open that waited never ends
    assert ran.returncode == 254 and "not a regular file" in ran.stderr, ran.stderr
    assert _rendered(shared_dirs) == before


_SWAP_AFTER_OPEN = r"""
import ctypes, os, select, struct, sys
layer, tampered = sys.argv[1], sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init()
IN_OPEN = 0x20
assert libc.inotify_add_watch(fd, os.fsencode(os.path.dirname(layer)), IN_OPEN) >= 0
print("WATCHING", flush=True)
name = os.path.basename(layer).encode()
opens = 0
while select.select([fd], [], [], 5)[0]:
    buf = os.read(fd, 4096)
    off = 0
    while off < len(buf):
        _wd, mask, _cookie, size = struct.unpack_from("iIII", buf, off)
        if buf[off + 16 : off + 16 + size].rstrip(b"\0") == name:
            opens += 1
            if opens == 1:
                os.rename(tampered, layer)  # root's first pass holds the genuine inode open
                print("SWAPPED", flush=True)
        off += 16 + size
print("OPENS", opens, flush=True)
"""


@needs_registry_tools
def test_a_layer_swapped_between_roots_two_squash_passes_is_refused(
    signed: Signed,  # noqa: F811
    shared_dirs: ConfigDirs,
    tmp_path: Path,
) -> None:
    """Root's squash reads each layer twice (pass 1 builds the tree, pass 2 copies the file
    bytes; no scratch copy on disk). A member watches the layer with inotify and, the moment
    root's first pass opens it, renames a changed layer over the name: the first pass reads
    the genuine inode, the second opens the changed one. Root must check the second read
    too: refused with the fix, nothing rendered, no pod. Was (held, but badly): when the
    second pass met the changed bytes inside a file's data, the decompressor's error
    (BadGzipFile, zlib.error) escaped root's check as "internal error ... report it" with a
    traceback of the squash's abandoned generator; now it is the refusal with the fix."""
    _trustd_dirs(signed, shared_dirs, tmp_path)
    good = _fetch(signed, shared_dirs, "ns/good:v1", "--insecure-options=http")
    layer = _kept_blobs(shared_dirs, good)[-1]
    body = bytearray(layer.read_bytes())
    body[len(body) // 2] ^= 0xFF  # inside the compressed data: other file bytes, same size
    tampered = layer.with_name(".tampered")
    changed = shared_dirs.data.parent / "tampered"
    changed.write_bytes(bytes(body))
    changed.chmod(0o644)
    member("/bin/cp", str(changed), str(tampered))
    before = _rendered(shared_dirs)
    watcher = member_popen("/usr/bin/python3", "-c", _SWAP_AFTER_OPEN, str(layer), str(tampered))
    try:
        assert watcher.stdout is not None
        assert "WATCHING" in watcher.stdout.readline(), watcher.communicate()[1]
        ran = rkt(shared_dirs, "run", good, "--exec=/bin/cat", "--", "/etc/gone")
        swapped, _ = watcher.communicate(timeout=60)
    finally:
        stop(watcher)
    assert "SWAPPED" in swapped  # the attack was made while root converted
    opens = int(swapped.split("OPENS", 1)[1])
    assert opens >= 2, swapped  # and root opened the layer again after it: its second pass
    assert ran.returncode == 254, ran.stdout + ran.stderr
    assert "does not have the digest" in ran.stderr or "changed while root read it" in ran.stderr
    assert "Traceback" not in ran.stderr and "internal error" not in ran.stderr, ran.stderr
    assert "rkt image rm" in ran.stderr and _rendered(shared_dirs) == before
    assert not list((shared_dirs.data / "pods" / "run").glob("*"))


# --- 6. what an app leaves behind: root's rm and gc --------------------------------------

_DEEP = "i=0; while [ $i -lt 1500 ]; do mkdir d && cd d || exit 1; i=$((i+1)); done; echo DEEP"


def test_an_app_that_leaves_a_deep_tree_cannot_stop_root_removing_its_pod(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """Any image's app writes a directory chain 1500 deep into its root (the pod's overlay
    upper layer, root-only on the host) and exits. Was: root's ``rkt rm`` died of Python's
    recursion limit in ``shutil.rmtree`` ('the input is nested too deeply to read', exit 254)
    and left the pod for ever, and ``rkt gc`` stopped at that pod, so no pod after it was
    collected again (their uid ranges, MCS labels and directories leaked). Now root removes
    any depth by fd (``_dirfd.rmtree_at``, no recursion, a bounded number of open
    directories): ``rm`` removes the pod and ``gc`` collects the pods around it."""
    uuid_file = shared_dirs.data.parent / "uuid"
    uuids = []
    for script in (_DEEP, _DEEP, "echo PLAIN"):
        uuid_file.unlink(missing_ok=True)
        ran = rkt(
            shared_dirs,
            "run",
            f"--uuid-file-save={uuid_file}",
            image,
            "--exec=/bin/sh",
            "--",
            "-c",
            f"cd /tmp 2>/dev/null || cd /; {script}",
        )
        assert ran.returncode == 0 and ("DEEP" in ran.stdout or "PLAIN" in ran.stdout), ran.stderr
        uuids.append(uuid_file.read_text().strip())
    removed = rkt(shared_dirs, "rm", uuids[0])
    assert removed.returncode == 0, removed.stderr
    collected = rkt(shared_dirs, "gc", "--grace-period=0s")
    assert collected.returncode == 0, collected.stderr
    assert not [u for u in uuids if list((shared_dirs.data / "pods").glob(f"*/{u}"))]


def test_a_deep_tree_a_member_plants_in_cas_tmp_cannot_stop_roots_image_gc(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """A member plants ``cas/tmp/import-x`` (the name of a killed import's staging, which
    root's ``image gc`` sweeps) holding a chain 1500 directories deep. Root's gc must finish
    (exit 0) and remove it, entering no directory of root's."""
    tmp = shared_dirs.data / "cas" / "tmp"
    member("/bin/sh", "-c", f"mkdir {tmp}/import-x && cd {tmp}/import-x && {_DEEP}")
    gc = rkt(shared_dirs, "image", "gc")
    assert gc.returncode == 0, gc.stderr
    assert not (tmp / "import-x").exists()


def test_a_setuid_file_pod_root_leaves_in_a_host_volume_does_not_reach_the_pods_secrets(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """With ``--private-users`` the pod's root is host uid ``shift``, and what it writes into
    a host volume is owned by ``shift`` on the host's own filesystem, where the pod's
    nosuid-less bind does not apply. Pod root copies a program a member left in a shared
    host volume (``/bin/cat``) and makes it setuid (its own file: allowed). The member runs
    it on the host and so runs as the pod's uid, outside the pod's confinement: still it
    cannot read the pod's secrets (here the app's ``--set-env`` value, through
    ``/proc/PID/environ``), because the app's user namespace is root's and ptrace access
    across it needs CAP_SYS_PTRACE there. (That uid can signal the pod's processes and
    change what the pod wrote to shared volumes: on record in the threat model.)"""
    vol = shared_dirs.data.parent / "shared-vol"
    vol.mkdir()
    vol.chmod(0o1777)  # like /tmp, or a shared spool
    member("/bin/cp", "/bin/cat", str(vol / "cat"))
    uuid_file = shared_dirs.data.parent / "uuid"
    script = (
        "cp /host/cat /host/scat && chmod 6755 /host/scat && touch /host/ready; "
        "while [ ! -e /host/done ]; do sleep 0.1; done"
    )
    pod = subprocess.Popen(
        [
            RKT,
            *shared_dirs.flags(),
            "run",
            "--private-users",
            f"--uuid-file-save={uuid_file}",
            f"--volume=host,kind=host,source={vol}",
            "--set-env=SECRET=hunter2-red-team",
            image,
            "--name=app",
            "--mount=volume=host,target=/host",
            "--exec=/bin/sh",
            "--",
            "-c",
            script,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(600):
            if (vol / "ready").exists() or pod.poll() is not None:
                break
            time.sleep(0.05)
        assert (vol / "ready").exists(), pod.communicate()
        pid_file = (
            shared_dirs.data / "pods" / "run" / saved_uuid(uuid_file) / "apps" / "app" / "pid"
        )
        stolen = as_member(str(vol / "scat"), f"/proc/{pid_file.read_text().strip()}/environ")
        (vol / "done").write_text("")
        pod.communicate(timeout=60)
    finally:
        if pod.poll() is None:
            with contextlib.suppress(Exception):
                rkt(shared_dirs, "stop", saved_uuid(uuid_file))
            stop(pod)
    assert (vol / "scat").stat().st_mode & 0o6000 == 0o6000  # the attack was made
    assert "hunter2-red-team" not in stolen.stdout, stolen.stdout
    assert "Permission denied" in stolen.stderr

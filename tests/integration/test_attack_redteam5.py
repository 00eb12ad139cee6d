"""Fifth red-team pass: root's run path beside ``rkt run`` (``image render``/``extract``/
``export`` by name, the render lock and tree store, the policy cache), attacked as a real
member of group rkt (``trustd-it-user``, through an unprivileged ``/bin/sh``).

Each test makes the attack, then asserts what trustd guarantees. The docstrings say what was
wrong where a hole was found.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._busybox import busybox_aci
from tests.conftest import ConfigDirs, Keys
from tests.integration._attacker import member, snapshot
from tests.integration.conftest import NAME, RKT, rkt


def _sql(dirs: ConfigDirs, statement: str) -> None:
    member("sqlite3", str(dirs.data / "cas/db/index.sqlite"), statement)


def _other_signed(dirs: ConfigDirs, keys: Keys, tmp_path: Path) -> str:
    """Another image, signed by the same trusted key, under another name."""
    other = busybox_aci(tmp_path / "other.aci", "example.com/other")
    keys.gpg.sign(keys.good, other, tmp_path / "other.aci.asc")
    out = rkt(dirs, "fetch", "--full", str(other), "--signature", str(tmp_path / "other.aci.asc"))
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _rename_row(dirs: ConfigDirs) -> None:
    """The member makes the index map NAME to example.com/other's image (as the newest)."""
    assert NAME == "example.com/busybox"
    _sql(
        dirs,
        "UPDATE images SET name = 'example.com/busybox', import_time = "
        "'2999-01-01T00:00:00+00:00' WHERE name = 'example.com/other'",
    )


@pytest.mark.parametrize("verb", ["render", "extract"])
def test_image_render_by_name_never_writes_another_signed_image(
    shared_dirs: ConfigDirs, image: str, keys: Keys, tmp_path: Path, verb: str
) -> None:
    """``rkt image render|extract NAME DEST`` as root resolved NAME in the group's index and
    handed root only the full ID; root re-verified that image's signature for the name in
    its own manifest, but never checked that this was NAME (``rkt run`` does, in
    ``_check_requested``). A member who renamed another signed image's index row to NAME had
    root write that image into DEST instead (e.g. a signed image of an older release, or
    any image signed under another trusted prefix). Now the request carries the name (and
    version) asked for and root refuses a verified manifest that says otherwise."""
    _other_signed(shared_dirs, keys, tmp_path)
    good = tmp_path / "good"
    assert rkt(shared_dirs, "image", verb, NAME, str(good)).returncode == 0
    _rename_row(shared_dirs)
    dest = tmp_path / "dest"
    out = rkt(shared_dirs, "image", verb, NAME, str(dest))
    if dest.exists() and (dest / "manifest").exists():
        written = json.loads((dest / "manifest").read_text())["name"]
        assert written == NAME, f"root {verb}ed {written} for {NAME}"
    assert out.returncode == 254, out.stderr
    assert f"not the requested {NAME}" in out.stderr
    assert not dest.exists() or not any(dest.iterdir())


def test_image_export_by_name_never_writes_another_image(
    shared_dirs: ConfigDirs, image: str, keys: Keys, tmp_path: Path
) -> None:
    """``rkt image export NAME OUT`` as root: the same renamed row had root export another
    image's bytes as NAME. Root now reads the name from the exported bytes' own manifest
    and refuses (no output) when it is not the name asked for."""
    other = _other_signed(shared_dirs, keys, tmp_path)
    _rename_row(shared_dirs)
    out_file = tmp_path / "out.aci"
    out = rkt(shared_dirs, "image", "export", NAME, str(out_file))
    if out_file.exists():
        listing = subprocess.run(
            ["tar", "-xOf", str(out_file), "manifest"], capture_output=True, check=True
        ).stdout
        assert json.loads(listing)["name"] == NAME, f"root exported {other[:19]} for {NAME}"
    assert out.returncode == 254, out.stderr
    assert f"not the requested {NAME}" in out.stderr
    assert not out_file.exists()


def _exchange_dir(dirs: ConfigDirs) -> tuple[Path, Path]:
    """A directory group rkt shares for data (2770 root:rkt, beside the data dir), holding
    the member's ``data`` directory; and a root-only directory with a secret."""
    shared = dirs.data.parent / "exchange"
    shared.mkdir()
    shutil.chown(shared, "root", "rkt")
    shared.chmod(0o2770)
    member("mkdir", str(shared / "data"))
    member("sh", "-c", f"echo member > {shared / 'data' / 'hello'}")
    victim = dirs.data.parent / "victim"
    victim.mkdir(mode=0o700)
    (victim / "secret").write_text("root only\n")
    return shared, victim


@pytest.mark.parametrize("link", ["the volume", "a directory above it"])
def test_a_host_volume_swapped_for_a_link_never_binds_the_links_target(
    shared_dirs: ConfigDirs, image: str, link: str
) -> None:
    """A host volume's source was bind-mounted by path when the pod started: a member who
    can write the directory holding it (a group-shared exchange directory) replaced it,
    between ``prepare`` and ``run-prepared`` (or within ``run``), with a symlink to any
    directory, e.g. ``/``, and the app (root in the pod) got it read-write. Now the stage1
    opens the source from ``/`` one component at a time, following a symlink only when root
    owns it, and binds the opened descriptor: the pod refuses to start, the target untouched."""
    shared, victim = _exchange_dir(shared_dirs)
    if link == "the volume":
        source, swap = shared / "data", shared / "data"
    else:
        member("mkdir", str(shared / "sub"))
        member("mv", str(shared / "data"), str(shared / "sub" / "data"))
        source, swap = shared / "sub" / "data", shared / "sub"
    uuid = rkt(
        shared_dirs,
        "prepare",
        f"--volume=data,kind=host,source={source}",
        "--mount=volume=data,target=/mnt",
        image,
        "--exec=/bin/sh",
        "--",
        "-c",
        "cat /mnt/secret /mnt/hello; echo pod > /mnt/planted",
        check=True,
    ).stdout.strip()
    member("mv", str(swap), str(shared / "moved"))
    member("ln", "-s", str(victim if link == "the volume" else victim.parent), str(swap))
    if link != "the volume":  # victim.parent/data -> the victim, as the member would arrange
        (victim.parent / "data").symlink_to(victim)
    before = snapshot(victim)
    ran = rkt(shared_dirs, "run-prepared", uuid)
    assert "root only" not in ran.stdout, ran.stdout
    assert snapshot(victim) == before
    assert ran.returncode != 0, ran.stdout
    assert "a link another user made" in ran.stderr + ran.stdout


def _setuid_planting_image(dirs: ConfigDirs, keys: Keys, tmp_path: Path, uid: int) -> str:
    """A signed image with a dynamically linked ``id`` (run from the host, it loads the
    host's libraries) and a passwd entry for the attacker's uid."""
    passwd = f"root:x:0:0:root:/root:/bin/sh\nattacker:x:{uid}:{uid}::/:/bin/sh\n"
    aci = busybox_aci(
        tmp_path / "suid.aci",
        "example.com/suid",
        files={"usr/bin/id": Path("/usr/bin/id").read_bytes(), "etc/passwd": passwd.encode()},
    )
    keys.gpg.sign(keys.good, aci, tmp_path / "suid.aci.asc")
    return rkt(dirs, "fetch", "--full", str(aci), check=True).stdout.strip()


def test_a_setuid_file_in_a_pods_root_is_not_setuid_through_proc_pid_root(
    shared_dirs: ConfigDirs, image: str, keys: Keys, tmp_path: Path
) -> None:
    """The pod's root is its app's ``/proc/PID/root``, open to the host account with the
    app's uid (without ``--private-users``): the app, root in the pod, leaves a setuid-root
    ``id`` in its layer and goes on as uid N (``su``); host user N executes
    ``/proc/PID/root/tmp/rid``. It held: the kernel treats a mount of another mount
    namespace as ``nosuid`` for exec (Linux 4.7, ``mnt_may_suid``), so the file runs with
    the caller's ids; kept as the regression test for the threat model's claim."""
    from tests.integration.conftest import ensure_user, running_pod  # noqa: PLC0415

    uid = int(
        subprocess.run(
            ["id", "-u", ensure_user()], capture_output=True, text=True, check=True
        ).stdout
    )
    suid = _setuid_planting_image(shared_dirs, keys, tmp_path, uid)
    script = (
        "cp /usr/bin/id /tmp/rid && chmod 4755 /tmp/rid && "
        "exec su -s /bin/sh attacker -c 'exec sleep 600'"
    )
    with running_pod(shared_dirs, suid, script=script) as pod:
        pid = next(pod.path.glob("apps/*/pid")).read_text().strip()
        planted = f"/proc/{pid}/root/tmp/rid"
        st = Path(planted).stat()
        assert st.st_uid == 0 and st.st_mode & 0o4000  # planted, setuid root, reachable
        ran = subprocess.run(
            ["setpriv", f"--reuid={uid}", "--regid=rkt", "--init-groups", "--", planted],
            capture_output=True,
            text=True,
            check=False,
        )
    assert ran.returncode == 0, ran.stderr  # the member reached the pod's root and ran it
    assert f"uid={uid}" in ran.stdout, ran.stdout
    assert "euid=0" not in ran.stdout, ran.stdout


_STALL = r"""
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(4)
print(s.getsockname()[1], flush=True)
conns = [s.accept()[0] for _ in range(1)]
time.sleep(120)
"""


def _fetch_children() -> list[int]:
    out = subprocess.run(["pgrep", "-u", "rkt-fetch"], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def test_an_fd_rkt_inherited_does_not_reach_the_fetch_child(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    """The root program closes what ``rkt``'s caller left open, but the fetch child, forked
    from root's front end before that, kept every descriptor: ``rkt fetch 9</root-only-dir
    8>>root-file`` (a script's, a service manager's) gave the child that parses what a
    local user's server sends, as ``rkt-fetch``, a way into root's directory and a root file
    open for writing. Now the child closes every inherited (not close-on-exec) descriptor
    right after the fork; what rkt opened itself stays."""
    from tests.integration._attacker import member_popen, stop  # noqa: PLC0415

    secret_dir = tmp_path / "root-only"
    secret_dir.mkdir(mode=0o700)
    log = tmp_path / "root.log"
    log.write_text("")
    server = member_popen("/usr/bin/python3", "-c", _STALL)
    assert server.stdout is not None
    port = int(server.stdout.readline())
    dir_fd = os.open(secret_dir, os.O_RDONLY | os.O_DIRECTORY)
    log_fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    before = set(_fetch_children())
    fetch = subprocess.Popen(
        [
            RKT,
            *shared_dirs.flags(),
            "--insecure-options=image,http",
            "fetch",
            f"http://127.0.0.1:{port}/x.aci",
        ],
        pass_fds=(dir_fd, log_fd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    os.close(dir_fd)
    os.close(log_fd)
    try:
        held: dict[int, list[str]] = {}
        for _ in range(600):  # until the child's download socket is open
            for pid in set(_fetch_children()) - before:
                try:
                    fds = [str(n.readlink()) for n in Path(f"/proc/{pid}/fd").iterdir()]
                except OSError:
                    continue
                if any(t.startswith("socket:") for t in fds):
                    held[pid] = fds
            if held:
                break
            time.sleep(0.05)
        assert held, "the fetch child never connected"
        for fds in held.values():
            assert str(secret_dir) not in fds and str(log) not in fds, fds
    finally:
        stop(server)  # the child's download ends with the connection
        fetch.kill()
        for pid in set(_fetch_children()) - before:  # the fetch children this test started
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        fetch.communicate(timeout=60)


_GC_ROOT_STEP = """
import sys
from pathlib import Path
from trustd.cli._handoff import call_root
from trustd.shared.config import Dirs, GlobalOptions
from trustd.shared.request import CollectTrees
system, local, data, image = sys.argv[1:]
options = GlobalOptions(Dirs(system_config=Path(system), local_config=Path(local), data=Path(data)))
call_root(options, "gc", CollectTrees("image-gc", (image,)))
print("collected")
"""


def _write_flocked(inode: int) -> bool:
    """Someone holds an exclusive flock on the file with ``inode`` (/proc/locks)."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if fields[1:4] == ["FLOCK", "ADVISORY", "WRITE"] and fields[5].endswith(f":{inode}"):
            return True
    return False


def test_a_member_queued_on_the_store_lock_cannot_hang_root_gc_and_every_root_run(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """``rkt image gc``'s root step (after the group's index part released ``cas/lock``)
    took root's tree lock exclusively, then swept ``cas/tmp`` under a blocking
    ``flock(cas/lock, LOCK_EX)``. A member whose ``flock -s cas/lock`` waited behind the
    index part's exclusive lock got it the moment that part let go, before root's step
    started, and held it: root's gc waited for ever with the tree lock held, so every root
    ``rkt run``/``prepare`` (which takes it shared) hung too. (Red team 1's test held the
    lock before gc started, where only the unprivileged index part waits.) This test starts
    root's step with the member already holding the lock, as that race ends. Now the sweep
    tries the lock for at most two seconds, then skips, saying so."""
    from tests.integration.conftest import ensure_user  # noqa: PLC0415
    from tests.integration.test_attack_redteam import _digest  # noqa: PLC0415

    full = "sha512-" + _digest(shared_dirs, image)  # a full ID: no index, no cas/lock needed
    assert rkt(shared_dirs, "run", full, "--exec=/bin/true").returncode == 0
    holder = subprocess.Popen(  # the member's flock, as it got the lock after the index part
        [
            *("setpriv", f"--reuid={ensure_user()}", "--regid=rkt", "--init-groups", "--"),
            *("flock", "-s", str(shared_dirs.data / "cas/lock"), "sleep", "120"),
        ],
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # flock forks sleep: kill the whole group
    )
    root_step = None
    try:
        time.sleep(1)  # the member holds the lock
        assert holder.poll() is None
        root_step = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _GC_ROOT_STEP,
                str(shared_dirs.system),
                str(shared_dirs.local),
                str(shared_dirs.data),
                full,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        tree_lock = (shared_dirs.data / "private/lock").stat().st_ino
        for _ in range(1200):  # root's step holds the tree lock (and goes on to the sweep)
            if _write_flocked(tree_lock) or root_step.poll() is not None:
                break
            time.sleep(0.05)
        try:
            run = rkt(shared_dirs, "run", full, "--exec=/bin/true")
        except subprocess.TimeoutExpired:
            pytest.fail("root's run hung behind root's gc, which waited on the member's lock")
        assert run.returncode == 0, run.stderr
        out, err = root_step.communicate(timeout=60)
        assert "collected" in out, err
        assert "cas/tmp was not swept" in err, err
    finally:
        if root_step is not None and root_step.poll() is None:
            root_step.kill()
            root_step.communicate()
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()

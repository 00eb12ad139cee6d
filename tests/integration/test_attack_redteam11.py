"""Eleventh red-team pass: root's own record of the images its fetches admitted
(``<dir>/private/fetched.json``, commit f4abae2), attacked by a real member of group rkt
(``trustd-it-user``, through an unprivileged ``/bin/sh``) who wants root's ``rkt run NAME``
to run an old, vulnerable, validly signed release of NAME.

Each test makes the attack, then asserts what trustd guarantees, counting outcomes (never
timing them). The docstrings say what was wrong where a hole was found.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests._aci import build_aci
from tests._busybox import busybox_aci
from tests.conftest import ConfigDirs, Keys
from tests.integration._attacker import member
from tests.integration.conftest import RKT, app_output, ensure_user, require_root, rkt

HOST = "apps.trustd.test"
NAME = f"{HOST}/hello"
OTHER = f"{HOST}/other"
HARNESS = str(Path(__file__).parents[2] / "scripts/local_https.py")

_REWRITE = (
    "import os, sys; p = sys.argv[1]; os.unlink(p); "
    "f = open(p, 'w'); f.write(sys.argv[2]); f.close(); print('REWRITTEN')"
)


def _site(dirs: ConfigDirs, keys: Keys) -> Path:
    """``https://apps.trustd.test/{hello,other}?ac-discovery=1``: two signed releases of
    hello (1.0.0 the old, vulnerable one), and ``other`` (no dependencies)."""
    root = Path(f"{dirs.data}-site")
    images = root / HOST / "images" / HOST
    images.mkdir(parents=True)
    for app in ("hello", "other"):
        (root / HOST / app).mkdir()
        (root / HOST / app / "index.html").write_text(
            f'<meta name="ac-discovery" content="{HOST} '
            f'https://{HOST}/images/{{name}}-{{version}}-{{os}}-{{arch}}.{{ext}}">\n'
        )
    for version in ("1.0.0", "2.0.0"):
        aci = images / f"hello-{version}-linux-amd64.aci"
        busybox_aci(aci, NAME, version=version, files={"release": version.encode() + b"\n"})
        keys.gpg.sign(keys.good, aci, Path(f"{aci}.asc"))
    other = build_aci(images / "other-latest-linux-amd64.aci", OTHER, version="latest")
    keys.gpg.sign(keys.good, other, Path(f"{other}.asc"))
    for p in [root, *root.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return root


def _served(
    site: Path, dirs: ConfigDirs, *args: str, user: str | None = None, serve: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``rkt ARGS`` (as root, or as ``user`` in group rkt) with the site served over HTTPS
    (``serve``: the harness's caching flags)."""
    as_user = ["setpriv", f"--reuid={user}", "--regid=rkt", "--init-groups", "--"] if user else []
    cmd = [sys.executable, HARNESS, "--root", str(site), "--host", HOST, *serve, "--", *as_user]
    return subprocess.run(
        [*cmd, RKT, *dirs.flags(), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


# How root's second fetch of ``other`` reuses the stored image: its download finds the image
# stored (``put``'s existing branch; the member fetched it first), root's record of the URL
# is fresh by the server's max-age (no request), or the server answers 304 to root's ETag.
REUSE = {
    "download": (),
    "cached-url": ("--max-age=3600",),
    "not-modified": ("--conditional",),
}


@pytest.mark.parametrize("reuse", list(REUSE))
def test_a_dependency_the_member_writes_into_a_stored_manifest_is_not_fetched_or_recorded(
    shared_dirs: ConfigDirs, keys: Keys, tmp_path: Path, reuse: str
) -> None:
    """Found by red team 11, fixed (``remote._fetch_dependencies`` reads the dependencies
    from the manifest of bytes the fetch child hashed, ``ImageStore.verified_manifest``).
    The fetch child took an image's dependencies from the blob directory's ``manifest``
    file, which the group rewrites, whenever it reused a stored image: a download of an
    image already in the store (``put``'s existing branch), a cached URL, a 304. A member
    fetched ``other`` into the store first (an ordinary fetch of theirs) and wrote a
    dependency on ``hello,version=1.0.0`` (an old, signed release) into its stored manifest;
    root's next ``rkt fetch other`` fetched hello 1.0.0 as a dependency and, since the child
    reports every image it admitted, root's record said root fetched 1.0.0 just now, after
    2.0.0: root's ``rkt run hello`` then ran the rollback (and ``cat-manifest`` showed it).
    Now a stored image's dependencies are those of its own signed bytes (re-hashed against
    its ID when this fetch did not admit them itself); the forged one is never fetched, by
    each of the three ways a fetch reuses a stored image (:data:`REUSE`)."""
    require_root()
    subprocess.run(["bash", "scripts/setup-groups.sh"], check=True)
    key = tmp_path / "k.asc"
    key.write_bytes(keys.public(keys.good))
    rkt(shared_dirs, "trust", "--prefix", HOST, "--skip-fingerprint-review", str(key), check=True)
    site = _site(shared_dirs, keys)
    for version in ("1.0.0", "2.0.0"):  # root fetched the old release, then the fix
        done = _served(site, shared_dirs, "fetch", f"{NAME}:{version}")
        assert done.returncode == 0, done.stderr
    serve = REUSE[reuse]
    user = ensure_user() if reuse == "download" else None  # else root fetches other first
    first = _served(site, shared_dirs, "fetch", "--full", OTHER, user=user, serve=serve)
    assert first.returncode == 0, first.stderr
    stored = first.stdout.strip()  # the store key: sha512- and 64 hex (rkt's --full)
    blob = shared_dirs.data / "cas/blob/sha512" / stored[7:9] / stored
    forged = json.loads((blob / "manifest").read_text())
    forged["dependencies"] = [
        {"imageName": NAME, "labels": [{"name": "version", "value": "1.0.0"}]}
    ]
    rewritten = member(
        "/usr/bin/python3", "-c", _REWRITE, str(blob / "manifest"), json.dumps(forged)
    )
    assert rewritten.stdout.strip() == "REWRITTEN"

    again = _served(site, shared_dirs, "--debug", "fetch", OTHER, serve=serve)  # a refresh
    assert again.returncode == 0, again.stderr
    # the reuse under test happened: only the download variant's archive is sent again
    assert ("Downloading ACI" in again.stderr) == (reuse == "download"), again.stderr
    assert "1.0.0" not in again.stderr, f"root fetched the forged dependency: {again.stderr}"
    shown = rkt(shared_dirs, "image", "cat-manifest", NAME, check=True).stdout
    assert {"name": "version", "value": "2.0.0"} in json.loads(shown)["labels"]
    ran = rkt(shared_dirs, "run", NAME, "--exec=/bin/cat", "--", "/release")
    assert ran.returncode == 0, ran.stderr
    assert app_output(ran.stdout).split()[-1:] == ["2.0.0"], (
        f"root ran the release the member's forged dependency recorded: {ran.stdout!r}"
    )

"""Fifth red-team pass: root's run path beside ``rkt run`` (``image render``/``extract``/
``export`` by name, the render lock and tree store, the policy cache), attacked as a real
member of group rkt (``trustd-it-user``, through an unprivileged ``/bin/sh``).

Each test makes the attack, then asserts what trustd guarantees. The docstrings say what was
wrong where a hole was found.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests._busybox import busybox_aci
from tests.conftest import ConfigDirs, Keys
from tests.integration._attacker import member
from tests.integration.conftest import NAME, rkt


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

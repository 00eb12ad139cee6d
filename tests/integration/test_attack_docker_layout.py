"""A group member who owns an ``oci:`` layout root fetches as a signed image (docs/adr/0028).

The layout is the member's: they can write its files while root's fetch runs (in place: root
opened every file before the privilege drop, so a rename is never seen), put symlinks in it,
and point its index anywhere. The policy states the layout's Docker reference and the image
is signed for it (skopeo), so the only way to run other bytes as that signed image is to
change them after a check. Each attack is made for real as the member; every outcome is
either the genuine image (the same image ID: the conversion is deterministic) or a refusal
that exits 254 and stores nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ConfigDirs
from tests.integration import _signed
from tests.integration._attacker import member, member_popen, stop
from tests.integration._layouts import blob, layer_digests, layout_of, policy_with_layouts, sha256
from tests.integration._registry import needs_registry_tools
from tests.integration._signed import Signed, ids, trustd_dirs
from tests.integration.conftest import ensure_user, rkt

pytestmark = needs_registry_tools
signed = _signed.signed  # the module-scoped signed registry these tests share


@pytest.fixture
def owned(signed: Signed) -> Iterator[Path]:
    """A copy of the signed ns/good:v1 as an oci: layout the member owns, in a directory
    they can reach, and a scratch directory of theirs beside it."""
    top = Path(tempfile.mkdtemp(prefix="trustd-layout-", dir="/tmp"))
    top.chmod(0o755)
    layout = top / "lay"
    layout_of(signed, "ns/good:v1", layout)
    (top / "mine").mkdir()
    shutil.chown(top / "mine", ensure_user())
    for root, dirs, files in os.walk(layout):
        for name in (*dirs, *files):
            shutil.chown(Path(root) / name, ensure_user())
    shutil.chown(layout, ensure_user())
    try:
        yield layout
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _stated(signed: Signed, dirs: ConfigDirs, layout: Path, tmp_path: Path) -> None:
    trustd_dirs(signed, dirs, tmp_path)
    policy_with_layouts(dirs, {f"oci:{layout}:v1": f"docker://{signed.host}/ns/good:v1"})


def _fetch(dirs: ConfigDirs, layout: Path) -> tuple[int, str, str]:
    out = rkt(dirs, "fetch", "--full", f"oci:{layout}:v1")
    return out.returncode, (out.stdout.strip().splitlines() or [""])[-1], out.stderr


def _refused(dirs: ConfigDirs, layout: Path, says: str) -> None:
    before = ids(dirs)
    code, _id, err = _fetch(dirs, layout)
    assert code == 254, err
    assert says in err, err
    assert ids(dirs) == before


def _evil_copy(path: Path, out: Path) -> Path:
    """``path``'s bytes with the last one changed (same size), readable by the member."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    out.write_bytes(bytes(data))
    out.chmod(0o644)
    return out


def test_a_layer_and_an_index_rewritten_while_root_fetches_never_run_as_signed(
    signed: Signed, shared_dirs: ConfigDirs, owned: Path, tmp_path: Path
) -> None:
    """The member flips a layer's bytes and index.json between the genuine ones and their own
    (same inodes) in a loop while root fetches again and again: a fetch stores the genuine
    image or refuses; nothing else is ever stored."""
    _stated(signed, shared_dirs, owned, tmp_path)
    code, genuine, err = _fetch(shared_dirs, owned)
    assert code == 0, err
    mine = owned.parent / "mine"
    layer = blob(owned, layer_digests(owned, "v1")[0])
    good_layer = mine / "good-layer"
    shutil.copy(layer, good_layer)
    evil_layer = _evil_copy(layer, mine / "evil-layer")
    index = json.loads((owned / "index.json").read_text())
    good_index = mine / "good-index"
    shutil.copy(owned / "index.json", good_index)
    unsigned = json.dumps(
        {**index, "manifests": [{**index["manifests"][0], "digest": sha256(b"x")}]}
    )
    (mine / "evil-index").write_text(unsigned)
    for f in mine.iterdir():
        f.chmod(0o644)
    loop = (
        "while :; do cp {el} {layer}; cp {ei} {idx}; sleep 0.1; cp {gl} {layer}; cp {gi} {idx}; "
        "sleep 0.3; done"
    ).format(el=evil_layer, layer=layer, ei=mine / "evil-index", idx=owned / "index.json",
             gl=good_layer, gi=good_index)  # fmt: skip
    rkt(shared_dirs, "image", "rm", genuine, check=True)
    attacker = member_popen("/bin/sh", "-c", loop)
    try:
        for _ in range(6):
            code, image_id, err = _fetch(shared_dirs, owned)
            if code == 0:
                assert image_id == genuine, err
            else:
                assert code == 254, err
                assert ids(shared_dirs) in ([], [genuine]), err
    finally:
        stop(attacker)
    assert attacker.returncode is not None  # it ran until stopped: the writes were made
    assert set(ids(shared_dirs)) <= {genuine}


def test_a_layer_changed_after_the_signature_check_is_refused(
    signed: Signed, shared_dirs: ConfigDirs, owned: Path, tmp_path: Path
) -> None:
    """The end state of a swap after the check: the signed manifest, another layer's bytes
    under the layer's name (written in place, so the fd root opened sees them)."""
    _stated(signed, shared_dirs, owned, tmp_path)
    layer = blob(owned, layer_digests(owned, "v1")[0])
    evil = _evil_copy(layer, owned.parent / "evil")
    member("cp", str(evil), str(layer))
    _refused(shared_dirs, owned, "hashing to sha256:")


def test_a_symlinked_blob_is_never_followed(
    signed: Signed, shared_dirs: ConfigDirs, owned: Path, tmp_path: Path
) -> None:
    _stated(signed, shared_dirs, owned, tmp_path)
    layer = blob(owned, layer_digests(owned, "v1")[0])
    elsewhere = owned.parent / "mine" / "layer"
    member("cp", str(layer), str(elsewhere))  # the genuine bytes, outside the layout
    member("rm", str(layer))
    member("ln", "-s", str(elsewhere), str(layer))
    _refused(shared_dirs, owned, "is not in the layout")


def test_a_blobs_directory_that_is_a_symlink_out_of_the_layout_is_refused(
    signed: Signed, shared_dirs: ConfigDirs, owned: Path, tmp_path: Path
) -> None:
    _stated(signed, shared_dirs, owned, tmp_path)
    outside = owned.parent / "mine" / "blobs"
    member("mv", str(owned / "blobs"), str(outside))
    member("ln", "-s", str(outside), str(owned / "blobs"))
    _refused(shared_dirs, owned, "a layout's links are never followed")


def test_an_index_naming_a_path_outside_the_layout_is_refused(
    signed: Signed, shared_dirs: ConfigDirs, owned: Path, tmp_path: Path
) -> None:
    _stated(signed, shared_dirs, owned, tmp_path)
    index = json.loads((owned / "index.json").read_text())
    index["manifests"][0]["digest"] = "sha256:../../../../etc/passwd"
    forged = owned.parent / "mine" / "index.json"
    forged.write_text(json.dumps(index))
    forged.chmod(0o644)
    member("cp", str(forged), str(owned / "index.json"))
    _refused(shared_dirs, owned, "is not a sha256: or sha512: digest")


def test_a_stored_layer_copy_rewritten_by_the_member_is_refused_at_run(
    signed: Signed, shared_dirs: ConfigDirs, owned: Path, tmp_path: Path
) -> None:
    """Root does not take the fetch side's word for a layout-sourced signed image either: it
    converts the kept layer copies again before the first render."""
    _stated(signed, shared_dirs, owned, tmp_path)
    code, image_id, err = _fetch(shared_dirs, owned)
    assert code == 0, err
    from trustd.shared.store import ImageStore  # noqa: PLC0415

    kept = ImageStore(shared_dirs.data).layout.blob_dir(image_id[: len("sha512-") + 64])
    digest = layer_digests(owned, "v1")[0]
    copy = kept / digest.replace(":", "-")
    evil = _evil_copy(copy, owned.parent / "mine" / "stored-evil")
    member("cp", str(evil), str(copy.with_name("x")))
    member("mv", "-f", str(copy.with_name("x")), str(copy))
    ran = rkt(shared_dirs, "run", image_id, "--exec=/bin/echo")
    assert ran.returncode == 254, ran.stderr
    assert "rkt image rm" in ran.stderr, ran.stderr

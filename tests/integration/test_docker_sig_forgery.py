"""A member of group rkt forges what a signed Docker image is made of (issue #12, ADR 0021).

Root re-verifies the stored evidence and converts the signed layers again before the first
render: evidence copied onto another image, an ACI of the member's own beside real evidence
and layers, a tampered layer, and an old render marker are all refused, store unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import ConfigDirs
from tests.integration import _signed
from tests.integration._registry import needs_registry_tools
from tests.integration._signed import (
    Signed,
    fetch,
    ids,
    private_state,
    trustd_dirs,
)
from tests.integration.conftest import rkt

pytestmark = needs_registry_tools
signed = _signed.signed  # the module-scoped signed registry these tests share


def test_evidence_moved_onto_an_unsigned_image_does_not_make_it_signed(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    """A member of group rkt copies a signed image's evidence (its signature file) onto an
    image stored unsigned: root binds the evidence to the ACI's recorded manifest digest."""
    from tests.integration._attacker import member  # noqa: PLC0415
    from trustd.shared.store import ImageStore  # noqa: PLC0415
    from trustd.shared.store._layout import SIGNATURE  # noqa: PLC0415

    trustd_dirs(signed, shared_dirs, tmp_path)
    good = fetch(signed, shared_dirs, "ns/good:v1", "--insecure-options=http")
    other = fetch(signed, shared_dirs, "ns/digest:v1", "--insecure-options=http,image")
    layout = ImageStore(shared_dirs.data).layout
    src = layout.blob_dir(good[: len("sha512-") + 64]) / SIGNATURE
    dst = layout.blob_dir(other[: len("sha512-") + 64]) / SIGNATURE
    member("/bin/sh", "-c", f"cp {src} {dst}.new && mv -f {dst}.new {dst}")
    ran = rkt(shared_dirs, "run", other, "--exec=/bin/echo")
    assert ran.returncode == 254
    assert "signature evidence is for" in ran.stderr, ran.stderr


# -- root converts a signed image again from its stored layers (ADR 0021 addendum) ------
_FORGE = """
import hashlib, io, os, shutil, sqlite3, sys, tarfile
data, good = sys.argv[1], sys.argv[2]
src = os.path.join(data, "cas/blob/sha512", good[7:9], good[:7 + 64])
out = io.BytesIO()
with tarfile.open(os.path.join(src, "image.aci")) as old, tarfile.open(
    fileobj=out, mode="w|", format=tarfile.PAX_FORMAT
) as new:
    for m in old.getmembers():
        new.addfile(m, old.extractfile(m) if m.isreg() else None)
    body = b"forged by a member of group rkt\\n"
    info = tarfile.TarInfo("rootfs/forged")
    info.size, info.mode = len(body), 0o644
    new.addfile(info, io.BytesIO(body))
forged = out.getvalue()
digest = hashlib.sha512(forged).hexdigest()
key = "sha512-" + digest[:64]
dst = os.path.join(data, "cas/blob/sha512", digest[:2], key)
os.makedirs(dst)
for name in os.listdir(src):  # the real evidence, manifest and the signed layers
    if name != "image.aci":
        shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))
with open(os.path.join(dst, "image.aci"), "wb") as f:
    f.write(forged)
db = sqlite3.connect(os.path.join(data, "cas/db/index.sqlite"))
with db:
    db.execute(
        "INSERT INTO images SELECT ?, ?, name, labels, import_time, last_used, size,"
        " uncompressed_size, source, provenance FROM images WHERE key = ?",
        (key, digest, good[:7 + 64]),
    )
print("sha512-" + digest)
"""


def test_a_forged_aci_naming_a_signed_manifest_with_its_evidence_is_refused(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    """A member of group rkt writes an ACI with a file of their own whose annotations name
    a genuinely signed manifest, beside the real evidence and layers, with an index row:
    every check on the evidence passes, and root's own squash of the signed layers is not
    that ACI, so nothing is rendered and no pod is made."""
    from tests.integration._attacker import member, snapshot  # noqa: PLC0415

    trustd_dirs(signed, shared_dirs, tmp_path)
    good = fetch(signed, shared_dirs, "ns/good:v1", "--insecure-options=http")
    script = shared_dirs.data.parent / "forge.py"
    script.write_text(_FORGE)
    script.chmod(0o644)
    forged = member("/usr/bin/python3", str(script), str(shared_dirs.data), good)
    forged_id = forged.stdout.strip()
    assert forged_id[:71] in ids(shared_dirs)  # the index lists it, as the attack needs
    cas, private = snapshot(shared_dirs.data / "cas" / "blob"), private_state(shared_dirs)
    ran = rkt(shared_dirs, "run", forged_id, "--exec=/bin/cat", "--", "/forged")
    assert ran.returncode == 254, ran.stdout + ran.stderr
    assert "is not the conversion of the signed" in ran.stderr, ran.stderr
    assert "forged by a member" not in ran.stdout
    assert snapshot(shared_dirs.data / "cas" / "blob") == cas
    assert private_state(shared_dirs) == private
    assert not (shared_dirs.data / "private" / "tree" / forged_id[:71]).exists()
    ran = rkt(shared_dirs, "run", good, "--exec=/bin/echo")  # the signed image still runs
    assert ran.returncode == 0, ran.stderr


def _tamper_a_layer(dirs: ConfigDirs, image_id: str) -> Path:
    """As the group member: flip the last byte of the image's largest kept blob."""
    from tests.integration._attacker import member  # noqa: PLC0415
    from trustd.shared.store import ImageStore  # noqa: PLC0415

    blob = ImageStore(dirs.data).layout.blob_dir(image_id[: len("sha512-") + 64])
    layers = sorted(p for p in blob.iterdir() if p.name.startswith("sha256-"))
    assert len(layers) >= 2  # the config and at least one layer are kept with the image
    layer = max(layers, key=lambda p: p.stat().st_size)
    tampered = bytearray(layer.read_bytes())
    tampered[-1] ^= 1
    fake = dirs.data.parent / "layer"
    fake.write_bytes(bytes(tampered))
    fake.chmod(0o644)
    member("/bin/sh", "-c", f"cp {fake} {layer}.new && mv -f {layer}.new {layer}")
    return layer


def test_a_tree_rendered_before_root_converted_docker_images_is_rendered_again(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    """A marker written before root converted signed docker images (no ``converted``) is
    not reused for one: the next run renders, and so converts, again."""
    trustd_dirs(signed, shared_dirs, tmp_path)
    good = fetch(signed, shared_dirs, "ns/good:v1", "--insecure-options=http")
    assert rkt(shared_dirs, "run", good, "--exec=/bin/echo").returncode == 0
    (tree,) = (shared_dirs.data / "private" / "tree").glob(good + "*")
    marker = json.loads((tree / "rendered").read_bytes())
    assert marker.pop("converted") is True
    (tree / "rendered").write_text(json.dumps(marker, sort_keys=True))  # an old marker
    layer = _tamper_a_layer(shared_dirs, good)
    ran = rkt(shared_dirs, "run", good, "--exec=/bin/echo")
    assert ran.returncode == 254, ran.stderr
    assert f"does not have the digest {layer.name.replace('-', ':', 1)}" in ran.stderr


def test_a_tampered_layer_of_a_signed_image_is_refused(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    """The layers root converts again are checked against the signed manifest's digests."""
    trustd_dirs(signed, shared_dirs, tmp_path)
    good = fetch(signed, shared_dirs, "ns/good:v1", "--insecure-options=http")
    layer = _tamper_a_layer(shared_dirs, good)
    private = private_state(shared_dirs)
    ran = rkt(shared_dirs, "run", good, "--exec=/bin/echo")
    assert ran.returncode == 254, ran.stderr
    assert f"does not have the digest {layer.name.replace('-', ':', 1)}" in ran.stderr, ran.stderr
    assert "rkt image rm" in ran.stderr
    assert private_state(shared_dirs) == private

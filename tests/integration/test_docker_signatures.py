"""Simple signing, both ways, with Debian's skopeo 1.9 (issue #12, CONVENTIONS 13).

skopeo signs (``copy --sign-by`` with a registries.d ``lookaside-staging: file://…``, and
``standalone-sign`` for the signatures a copy cannot make: another identity, a manifest list
instance) into the local docker-registry; trustd fetches with the key trusted for the
``docker://`` prefix and the same registries.d under its config dir. For every case,
``skopeo copy --policy P`` with the equivalent ``signedBy`` requirement reaches the same
verdict, for the same reason. Every refusal leaves the store unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ConfigDirs, Keys
from tests.integration._registry import (
    Registry,
    build_images,
    manifest_entry,
    needs_registry_tools,
    put_manifest_list,
    run,
    start_registry,
)
from tests.integration.conftest import rkt

pytestmark = needs_registry_tools


@dataclass
class Signed:
    host: str
    look: Path
    registries_d: Path
    keys: Keys
    work: Path
    layout: Path

    def skopeo(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "GNUPGHOME": str(self.keys.gpg.home)}
        return subprocess.run(
            ["skopeo", *args], capture_output=True, text=True, check=False, timeout=120, env=env
        )

    def push(self, tag: str, dest: str, *sign: str) -> None:
        out = self.skopeo(
            "copy",
            "--quiet",
            "--registries.d",
            str(self.registries_d),
            "--dest-tls-verify=false",
            *sign,
            f"oci:{self.layout}:{tag}",
            f"docker://{self.host}/{dest}",
        )
        assert out.returncode == 0, out.stderr

    def standalone(self, repo_tag: str, manifest: bytes, identity: str, fpr: str) -> Path:
        """A signature over ``manifest`` naming ``identity``, put where ``repo_tag``'s
        lookaside would hold it for that manifest's digest."""
        import hashlib  # noqa: PLC0415

        src = self.work / "m.json"
        src.write_bytes(manifest)
        digest = hashlib.sha256(manifest).hexdigest()
        repo = repo_tag.split(":", maxsplit=1)[0]
        dest = self.look / f"{repo}@sha256={digest}" / "signature-1"
        dest.parent.mkdir(parents=True, exist_ok=True)
        out = self.skopeo("standalone-sign", str(src), identity, fpr, "--output", str(dest))
        assert out.returncode == 0, out.stderr
        return dest


def _manifest(host: str, repo: str, ref: str) -> bytes:
    import urllib.request  # noqa: PLC0415

    req = urllib.request.Request(
        f"http://{host}/v2/{repo}/manifests/{ref}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                 "application/vnd.docker.distribution.manifest.v2+json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        return bytes(resp.read())


@pytest.fixture(scope="module")
def signed(keys: Keys) -> Iterator[Signed]:
    # readable by rkt-fetch, which reads file:// lookaside (pytest's tmp dirs are root-only)
    work = Path(tempfile.mkdtemp(prefix="trustd-sig-", dir="/tmp"))
    work.chmod(0o755)
    look = work / "look"
    look.mkdir()
    rd = work / "registries.d"
    rd.mkdir()
    (rd / "default.yaml").write_text(
        f"default-docker:\n  lookaside: file://{look}\n  lookaside-staging: file://{look}\n"
    )
    registry: Registry = start_registry(work / "reg", work / "storage")
    try:
        layout = build_images(work)
        world = Signed(registry.host, look, rd, keys, work, layout)
        good = ("--sign-by", keys.good)
        world.push("base", "ns/good:v1", *good)
        world.push("base", "ns/unsigned:v1")
        world.push("base", "ns/untrusted:v1", "--sign-by", keys.rsa)
        world.push("base", "ns/identity:v1")
        base = _manifest(registry.host, "ns/identity", "v1")
        world.standalone("ns/identity:v1", base, f"{registry.host}/ns/other:v1", keys.good)
        # another digest: a signature over base's manifest, filed under multi's digest
        world.push("multi", "ns/digest:v1")
        multi = _manifest(registry.host, "ns/digest", "v1")
        sig = world.standalone("ns/digest:v1", base, f"{registry.host}/ns/digest:v1", keys.good)
        wrong = look / f"ns/digest@sha256={__import__('hashlib').sha256(multi).hexdigest()}"
        wrong.mkdir(parents=True)
        shutil.copy(sig, wrong / "signature-1")
        # the tag moved after signing: base signed as ns/moved:v1, then multi pushed over it
        world.push("base", "ns/moved:v1", *good)
        world.push("multi", "ns/moved:v1")
        # a manifest list whose amd64 instance is signed for the list's name
        world.push("base", "ns/list:amd", "--format", "v2s2")
        world.push("arm", "ns/list:arm", "--format", "v2s2")
        amd = manifest_entry(registry.host, "ns/list", "amd", "amd64")
        arm = manifest_entry(registry.host, "ns/list", "arm", "arm64")
        put_manifest_list(registry.host, "ns/list", "v1", [arm, amd])
        amd_manifest = _manifest(registry.host, "ns/list", amd["digest"])
        world.standalone("ns/list:v1", amd_manifest, f"{registry.host}/ns/list:v1", keys.good)
        yield world
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)


def _trustd_dirs(signed: Signed, dirs: ConfigDirs, tmp_path: Path) -> None:
    shutil.copytree(signed.registries_d, dirs.local / "registries.d")
    key = tmp_path / "good.asc"
    key.write_bytes(signed.keys.public(signed.keys.good))
    rkt(
        dirs,
        "trust",
        "--prefix",
        f"docker://{signed.host}/ns",
        "--skip-fingerprint-review",
        str(key),
        check=True,
    )


def _skopeo_verdict(signed: Signed, image: str, tmp_path: Path) -> tuple[bool, str]:
    keyring = tmp_path / "good.gpg"
    keyring.write_bytes(signed.keys.gpg.export(signed.keys.good, armor=False))
    policy = tmp_path / "policy.json"
    requirement = [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(keyring)}]
    doc = {
        "default": [{"type": "reject"}],
        "transports": {"docker": {f"{signed.host}/ns": requirement}},
    }
    policy.write_text(json.dumps(doc))
    out = signed.skopeo(
        "--policy",
        str(policy),
        "--registries.d",
        str(signed.registries_d),
        "copy",
        "--quiet",
        "--remove-signatures",  # verified on reading; an oci: layout cannot store them
        "--src-tls-verify=false",
        "--override-arch",
        "amd64",
        f"docker://{signed.host}/{image}",
        f"oci:{tmp_path / 'out'}:x",
    )
    return out.returncode == 0, out.stderr


def _ids(dirs: ConfigDirs) -> list[str]:
    out = rkt(dirs, "image", "list", "--format=json", "--full")
    return sorted(r["id"] for r in json.loads(out.stdout)) if out.returncode == 0 else []


# (image, accepted, what trustd says, what skopeo says)
CASES = [
    ("ns/good:v1", True, "", ""),
    ("ns/unsigned:v1", False, "has no signature", "A signature was required"),
    ("ns/untrusted:v1", False, "which is not trusted for prefix", "Invalid GPG signature"),
    ("ns/identity:v1", False, "names another image", "not accepted"),
    ("ns/digest:v1", False, "is for manifest sha256:", "does not match"),
    ("ns/moved:v1", False, "has no signature", "A signature was required"),
    ("ns/list:v1", True, "", ""),
]


@pytest.mark.parametrize(("image", "accepted", "trustd_says", "skopeo_says"), CASES)
def test_trustd_and_skopeo_reach_the_same_verdict(
    signed: Signed,
    shared_dirs: ConfigDirs,
    tmp_path: Path,
    image: str,
    accepted: bool,
    trustd_says: str,
    skopeo_says: str,
) -> None:
    _trustd_dirs(signed, shared_dirs, tmp_path)
    ok, why = _skopeo_verdict(signed, image, tmp_path)
    assert ok == accepted, why
    assert skopeo_says in why
    before = _ids(shared_dirs)
    out = rkt(shared_dirs, "fetch", "--insecure-options=http", f"docker://{signed.host}/{image}")
    if accepted:
        assert out.returncode == 0, out.stderr
        listed = json.loads(rkt(shared_dirs, "image", "list", "--format=json").stdout)
        assert len(listed) == len(before) + 1
        return
    assert out.returncode == 254, out.stderr
    assert trustd_says in out.stderr
    assert _ids(shared_dirs) == before  # the refusal stored nothing


def test_a_key_trusted_for_the_port_bearing_prefix_lists_as_typed(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    _trustd_dirs(signed, shared_dirs, tmp_path)
    listed = json.loads(rkt(shared_dirs, "trust", "list", "--format=json", check=True).stdout)
    prefixes = {r["prefix"] for r in listed}
    assert f"docker://{signed.host}/ns" in prefixes
    assert not any("-" + signed.host.rsplit(":", 1)[1] in (p or "") for p in prefixes)


def _fetch(signed: Signed, dirs: ConfigDirs, image: str, *opts: str) -> str:
    out = rkt(dirs, "fetch", "--full", *opts, f"docker://{signed.host}/{image}")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_a_signed_docker_image_runs_after_root_verifies_its_signature_again(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    _trustd_dirs(signed, shared_dirs, tmp_path)
    image_id = _fetch(signed, shared_dirs, "ns/good:v1", "--insecure-options=http")
    ran = rkt(shared_dirs, "run", image_id, "--exec=/bin/echo")
    assert ran.returncode == 0, ran.stderr
    log = (shared_dirs.data / "policy" / "decisions.jsonl").read_text().splitlines()
    fetched = json.loads(log[-1])["decision"]
    assert fetched["signature"]["format"] == "simple-signing"
    assert fetched["signature"]["docker_name"] == f"docker://{signed.host}/ns/good"
    assert fetched["signature"]["manifest_digest"].startswith("sha256:")
    assert fetched["signature"]["signers"] == signed.keys.good.upper()


def test_the_signed_platform_manifest_of_a_list_runs_after_roots_own_conversion(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    """The evidence holds the amd64 instance's manifest; root converts its kept layers. The
    kept layers live and die with their image: image gc keeps them while a pod holds the
    image and removes them with an unused one, image rm removes them."""
    from trustd.shared.store import ImageStore  # noqa: PLC0415

    _trustd_dirs(signed, shared_dirs, tmp_path)
    image_id = _fetch(signed, shared_dirs, "ns/list:v1", "--insecure-options=http")
    blob = ImageStore(shared_dirs.data).layout.blob_dir(image_id[: len("sha512-") + 64])
    assert any(p.name.startswith("sha256-") for p in blob.iterdir())
    ran = rkt(shared_dirs, "run", image_id, "--exec=/bin/echo", "--", "converted-by-root")
    assert ran.returncode == 0, ran.stderr
    assert "converted-by-root" in ran.stdout
    rendered = [p.name for p in (shared_dirs.data / "private" / "tree").iterdir()]
    assert [n for n in rendered if n.startswith(image_id)], rendered
    other = _fetch(signed, shared_dirs, "ns/good:v1", "--insecure-options=http")
    other_blob = ImageStore(shared_dirs.data).layout.blob_dir(other[: len("sha512-") + 64])
    kept = sorted(p.name for p in blob.iterdir())
    rkt(shared_dirs, "image", "gc", "--grace-period=0s", check=True)
    assert not other_blob.exists()  # an unused image goes, with its layers
    assert sorted(p.name for p in blob.iterdir()) == kept  # the exited pod's image stays whole
    for _ in range(2):  # exited -> exited-garbage -> removed: the pod no longer holds it
        rkt(shared_dirs, "gc", "--grace-period=0s", check=True)
    rkt(shared_dirs, "image", "rm", image_id, check=True)  # the kept layers go with it
    assert not blob.exists()


def test_a_docker_key_removed_after_the_fetch_stops_the_run(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    _trustd_dirs(signed, shared_dirs, tmp_path)
    image_id = _fetch(signed, shared_dirs, "ns/good:v1", "--insecure-options=http")
    prefix = f"docker://{signed.host}/ns"
    rkt(shared_dirs, "trust", "remove", "--prefix", prefix, signed.keys.good, check=True)
    ran = rkt(shared_dirs, "run", image_id, "--exec=/bin/echo")
    assert ran.returncode == 254
    assert "not trusted for prefix" in ran.stderr, ran.stderr


def test_evidence_moved_onto_an_unsigned_image_does_not_make_it_signed(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    """A member of group rkt copies a signed image's evidence (its signature file) onto an
    image stored unsigned: root binds the evidence to the ACI's recorded manifest digest."""
    from tests.integration._attacker import member  # noqa: PLC0415
    from trustd.shared.store import ImageStore  # noqa: PLC0415
    from trustd.shared.store._layout import SIGNATURE  # noqa: PLC0415

    _trustd_dirs(signed, shared_dirs, tmp_path)
    good = _fetch(signed, shared_dirs, "ns/good:v1", "--insecure-options=http")
    other = _fetch(signed, shared_dirs, "ns/digest:v1", "--insecure-options=http,image")
    layout = ImageStore(shared_dirs.data).layout
    src = layout.blob_dir(good[: len("sha512-") + 64]) / SIGNATURE
    dst = layout.blob_dir(other[: len("sha512-") + 64]) / SIGNATURE
    member("/bin/sh", "-c", f"cp {src} {dst}.new && mv -f {dst}.new {dst}")
    ran = rkt(shared_dirs, "run", other, "--exec=/bin/echo")
    assert ran.returncode == 254
    assert "signature evidence is for" in ran.stderr, ran.stderr


def _require(dirs: ConfigDirs, extra: str) -> None:
    from tests._policy import install_policy, policy_for_tests  # noqa: PLC0415

    text = policy_for_tests().replace("threshold = 1 ", f"threshold = 1\n{extra}\n", 1)
    assert extra in text
    install_policy(dirs.system, text)


def test_an_identity_rule_in_the_policy_admits_what_the_default_rule_refuses(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    """ns/identity:v1 is signed for ns/other:v1: refused by matchRepoDigestOrExact (the table
    above), accepted at fetch and at run under exactReference naming what was signed."""
    _trustd_dirs(signed, shared_dirs, tmp_path)
    exact = f'{{type = "exactReference", docker_reference = "{signed.host}/ns/other:v1"}}'
    _require(shared_dirs, f"signed_identity = {exact}")
    image_id = _fetch(signed, shared_dirs, "ns/identity:v1", "--insecure-options=http")
    ran = rkt(shared_dirs, "run", image_id, "--exec=/bin/echo")
    assert ran.returncode == 0, ran.stderr


def test_a_scope_that_counts_only_openpgp_acis_refuses_simple_signing(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    _trustd_dirs(signed, shared_dirs, tmp_path)
    _require(shared_dirs, 'formats = ["openpgp"]')
    before = _ids(shared_dirs)
    out = rkt(shared_dirs, "fetch", "--insecure-options=http", f"docker://{signed.host}/ns/good:v1")
    assert out.returncode == 254
    assert "signed in the simple-signing format; this scope counts openpgp" in out.stderr
    assert _ids(shared_dirs) == before


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


def _private(dirs: ConfigDirs) -> list[str]:
    """Rendered trees (and render stages) and pods that got past prepare (a refused
    prepare leaves its embryo in ``pods/garbage``, as rkt does)."""
    pods = [p for p in (dirs.data / "pods").glob("*") if p.name != "garbage"]
    return sorted(
        str(entry.relative_to(dirs.data))
        for parent in [dirs.data / "private" / "tree", *pods]
        if parent.is_dir()
        for entry in parent.iterdir()
    )


def test_a_forged_aci_naming_a_signed_manifest_with_its_evidence_is_refused(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    """A member of group rkt writes an ACI with a file of their own whose annotations name
    a genuinely signed manifest, beside the real evidence and layers, with an index row:
    every check on the evidence passes, and root's own squash of the signed layers is not
    that ACI, so nothing is rendered and no pod is made."""
    from tests.integration._attacker import member, snapshot  # noqa: PLC0415

    _trustd_dirs(signed, shared_dirs, tmp_path)
    good = _fetch(signed, shared_dirs, "ns/good:v1", "--insecure-options=http")
    script = shared_dirs.data.parent / "forge.py"
    script.write_text(_FORGE)
    script.chmod(0o644)
    forged = member("/usr/bin/python3", str(script), str(shared_dirs.data), good)
    forged_id = forged.stdout.strip()
    assert forged_id[:71] in _ids(shared_dirs)  # the index lists it, as the attack needs
    cas, private = snapshot(shared_dirs.data / "cas" / "blob"), _private(shared_dirs)
    ran = rkt(shared_dirs, "run", forged_id, "--exec=/bin/cat", "--", "/forged")
    assert ran.returncode == 254, ran.stdout + ran.stderr
    assert "is not the conversion of the signed" in ran.stderr, ran.stderr
    assert "forged by a member" not in ran.stdout
    assert snapshot(shared_dirs.data / "cas" / "blob") == cas
    assert _private(shared_dirs) == private
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
    _trustd_dirs(signed, shared_dirs, tmp_path)
    good = _fetch(signed, shared_dirs, "ns/good:v1", "--insecure-options=http")
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
    _trustd_dirs(signed, shared_dirs, tmp_path)
    good = _fetch(signed, shared_dirs, "ns/good:v1", "--insecure-options=http")
    layer = _tamper_a_layer(shared_dirs, good)
    private = _private(shared_dirs)
    ran = rkt(shared_dirs, "run", good, "--exec=/bin/echo")
    assert ran.returncode == 254, ran.stderr
    assert f"does not have the digest {layer.name.replace('-', ':', 1)}" in ran.stderr, ran.stderr
    assert "rkt image rm" in ran.stderr
    assert _private(shared_dirs) == private


# -- sigstore (cosign) signatures, made as cosign documents for external signers ----------------
def _http(method: str, url: str, body: bytes = b"", ctype: str = "") -> tuple[int, dict[str, str]]:
    import urllib.request  # noqa: PLC0415

    headers = {"Content-Type": ctype} if ctype else {}
    req = urllib.request.Request(  # noqa: S310 - the test's own http:// registry
        url, data=body or None, method=method, headers=headers
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        return resp.status, dict(resp.headers)


def _push_blob(host: str, repo: str, data: bytes) -> str:
    import hashlib  # noqa: PLC0415

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _status, headers = _http("POST", f"http://{host}/v2/{repo}/blobs/uploads/")
    location = headers["Location"]
    if location.startswith("/"):
        location = f"http://{host}{location}"
    sep = "&" if "?" in location else "?"
    _http("PUT", f"{location}{sep}digest={digest}", data, "application/octet-stream")
    return digest


def attach_cosign_signature(host: str, repo: str, reference: str, key: Path, digest: str) -> None:
    """What ``cosign attach signature`` stores: the ``sha256-<hex>.sig`` OCI image whose layer
    is the payload, signed by ``openssl dgst -sha256 -sign`` (cosign's external-signer flow)."""
    import base64  # noqa: PLC0415

    from trustd.shared.ocisig.payload import build_payload  # noqa: PLC0415

    payload = build_payload(reference, digest, "sigstore")
    signed = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", str(key)],
        input=payload,
        capture_output=True,
        check=True,
    ).stdout
    layer = _push_blob(host, repo, payload)
    config = b"{}"
    config_digest = _push_blob(host, repo, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                "digest": layer,
                "size": len(payload),
                "annotations": {
                    "dev.cosignproject.cosign/signature": base64.b64encode(signed).decode()
                },
            }
        ],
    }
    tag = digest.replace(":", "-") + ".sig"
    _http(
        "PUT",
        f"http://{host}/v2/{repo}/manifests/{tag}",
        json.dumps(manifest).encode(),
        "application/vnd.oci.image.manifest.v1+json",
    )


def _p256(tmp_path: Path, name: str) -> tuple[Path, Path]:
    private, public = tmp_path / f"{name}.key", tmp_path / f"{name}.pub"
    run("openssl", "ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", str(private))
    run("openssl", "ec", "-in", str(private), "-pubout", "-out", str(public))
    return private, public


def _digest_of(host: str, repo: str, tag: str) -> str:
    import hashlib  # noqa: PLC0415

    return "sha256:" + hashlib.sha256(_manifest(host, repo, tag)).hexdigest()


@pytest.fixture(scope="module")
def cosign_keys(signed: Signed, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("cosign")
    trusted, trusted_pub = _p256(work, "trusted")
    other, _ = _p256(work, "other")
    host = signed.host
    signed.push("base", "ns/cosign:v1")
    digest = _digest_of(host, "ns/cosign", "v1")
    attach_cosign_signature(host, "ns/cosign", f"{host}/ns/cosign:v1", trusted, digest)
    signed.push("base", "ns/cosign-other:v1")
    digest = _digest_of(host, "ns/cosign-other", "v1")
    attach_cosign_signature(host, "ns/cosign-other", f"{host}/ns/cosign-other:v1", other, digest)
    signed.push("base", "ns/both:v1", "--sign-by", signed.keys.good)
    digest = _digest_of(host, "ns/both", "v1")
    attach_cosign_signature(host, "ns/both", f"{host}/ns/both:v1", trusted, digest)
    return {"pub": trusted_pub}


def _trust_pem(signed: Signed, dirs: ConfigDirs, pub: Path) -> None:
    shown = rkt(
        dirs,
        "trust",
        "--prefix",
        f"docker://{signed.host}/ns",
        "--skip-fingerprint-review",
        str(pub),
        check=True,
    )
    assert "Added key for prefix" in shown.stdout


def test_a_cosign_signature_by_a_trusted_pem_key_is_accepted_and_runs(
    signed: Signed, cosign_keys: dict[str, Path], shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    _trustd_dirs(signed, shared_dirs, tmp_path)
    _trust_pem(signed, shared_dirs, cosign_keys["pub"])
    listed = json.loads(rkt(shared_dirs, "trust", "list", "--format=json", check=True).stdout)
    assert any(r["key_type"] == "ecdsa-p256" for r in listed)
    image_id = _fetch(signed, shared_dirs, "ns/cosign:v1", "--insecure-options=http")
    log = (shared_dirs.data / "policy" / "decisions.jsonl").read_text().splitlines()
    assert json.loads(log[-1])["decision"]["signature"]["format"] == "sigstore"
    ran = rkt(shared_dirs, "run", image_id, "--exec=/bin/echo")
    assert ran.returncode == 0, ran.stderr


def test_a_cosign_signature_by_an_untrusted_key_is_refused(
    signed: Signed, cosign_keys: dict[str, Path], shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    _trustd_dirs(signed, shared_dirs, tmp_path)
    _trust_pem(signed, shared_dirs, cosign_keys["pub"])
    before = _ids(shared_dirs)
    out = rkt(
        shared_dirs,
        "fetch",
        "--insecure-options=http",
        f"docker://{signed.host}/ns/cosign-other:v1",
    )
    assert out.returncode == 254
    assert "was not made by a key trusted for" in out.stderr, out.stderr
    assert _ids(shared_dirs) == before


def test_two_of_two_counts_signers_across_formats(
    signed: Signed, cosign_keys: dict[str, Path], shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    """ns/both:v1 is signed by skopeo (OpenPGP) and by a cosign key: threshold 2 passes;
    ns/cosign:v1 (one signer) does not."""
    _trustd_dirs(signed, shared_dirs, tmp_path)
    _trust_pem(signed, shared_dirs, cosign_keys["pub"])
    from tests._policy import install_policy, policy_for_tests  # noqa: PLC0415

    install_policy(
        shared_dirs.system, policy_for_tests().replace("threshold = 1 ", "threshold = 2 ")
    )
    image_id = _fetch(signed, shared_dirs, "ns/both:v1", "--insecure-options=http")
    ran = rkt(shared_dirs, "run", image_id, "--exec=/bin/echo")
    assert ran.returncode == 0, ran.stderr
    one = rkt(
        shared_dirs, "fetch", "--insecure-options=http", f"docker://{signed.host}/ns/cosign:v1"
    )
    assert one.returncode == 254
    assert "1 of 2 required signature(s)" in one.stderr, one.stderr


def _with_scope(dirs: ConfigDirs, key: str, require: str) -> None:
    from tests._policy import install_policy, policy_for_tests  # noqa: PLC0415

    install_policy(dirs.system, policy_for_tests() + f'\n[scopes."{key}".require]\n{require}\n')


def _last(path: Path) -> dict[str, object]:
    return dict(json.loads(path.read_text().splitlines()[-1])["decision"])


def test_a_docker_scope_for_the_port_bearing_registry_decides_fetch_and_run(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    """A scope spelled as typed, ``docker://127.0.0.1:PORT/ns``, is the scope both gates
    decide a signed image by (issue #12); explain and check say so too."""
    _trustd_dirs(signed, shared_dirs, tmp_path)
    key = f"docker://{signed.host}/ns"
    _with_scope(shared_dirs, key, 'type = "signed"\nformats = ["simple-signing"]')
    image_id = _fetch(signed, shared_dirs, "ns/good:v1", "--insecure-options=http")
    assert _last(shared_dirs.data / "policy" / "decisions.jsonl")["scope"] == key
    ran = rkt(shared_dirs, "run", image_id, "--exec=/bin/echo")
    assert ran.returncode == 0, ran.stderr
    run_decision = _last(shared_dirs.data / "private" / "decisions.jsonl")
    assert run_decision["gate"] == "run" and run_decision["scope"] == key
    explained = rkt(
        shared_dirs, "policy", "explain", "--format=json", f"docker://{signed.host}/ns/good:v1"
    )
    doc = json.loads(explained.stdout)
    assert doc["scope"] == key and doc["require"]["formats"] == ["simple-signing"], doc
    stored = json.loads(rkt(shared_dirs, "policy", "explain", "--format=json", image_id).stdout)
    assert stored["scope"] == key and stored["stored"]["verdict"] == "allow", stored


def test_a_docker_scope_that_rejects_the_name_refuses_at_fetch_and_at_run(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    """Refused by the docker:// scope at fetch (nothing stored), and, once stored under a
    policy that allowed it, at run (the store as it was)."""
    _trustd_dirs(signed, shared_dirs, tmp_path)
    key = f"docker://{signed.host}/ns/good"
    _with_scope(shared_dirs, key, 'type = "reject"')
    before = _ids(shared_dirs)
    out = rkt(shared_dirs, "fetch", "--insecure-options=http", f"docker://{signed.host}/ns/good:v1")
    assert out.returncode == 254, out.stderr
    assert key in out.stderr, out.stderr
    assert signed.host.replace(":", "-") not in out.stderr  # hints spell it as typed
    assert _ids(shared_dirs) == before
    _with_scope(shared_dirs, key, 'type = "signed"')
    image_id = _fetch(signed, shared_dirs, "ns/good:v1", "--insecure-options=http")
    first = rkt(shared_dirs, "run", image_id, "--exec=/bin/echo")  # stage1 is stored now too
    assert first.returncode == 0, first.stderr
    _with_scope(shared_dirs, key, 'type = "reject"')
    stored = _ids(shared_dirs)
    ran = rkt(shared_dirs, "run", image_id, "--exec=/bin/echo", "--", "must-not-run")
    assert ran.returncode == 254, ran.stderr
    assert "must-not-run" not in ran.stdout
    refused = _last(shared_dirs.data / "private" / "decisions.jsonl")
    assert refused["gate"] == "run" and refused["verdict"] == "deny" and refused["scope"] == key
    assert _ids(shared_dirs) == stored


def test_a_scope_in_the_old_mangled_spelling_still_matches_and_lint_names_the_new_one(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    _trustd_dirs(signed, shared_dirs, tmp_path)
    mangled = f"{signed.host.replace(':', '-')}/ns/good"
    _with_scope(shared_dirs, mangled, 'type = "reject"')
    out = rkt(shared_dirs, "fetch", "--insecure-options=http", f"docker://{signed.host}/ns/good:v1")
    assert out.returncode == 254, out.stderr
    check = rkt(shared_dirs, "policy", "check", "--format=json")
    found = [f for f in json.loads(check.stdout)["findings"] if f["rule_id"] == "TD-POL-024"]
    assert found and f"docker://{signed.host}/ns/good" in found[0]["fix"], check.stdout


def test_an_unsigned_docker_image_is_judged_by_its_docker_scope_at_both_gates(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    """No evidence: both gates take the Docker name from the image's own manifest."""
    _trustd_dirs(signed, shared_dirs, tmp_path)
    key = f"docker://{signed.host}/ns/unsigned"
    _with_scope(shared_dirs, key, 'type = "accept-anything"')
    image_id = _fetch(signed, shared_dirs, "ns/unsigned:v1", "--insecure-options=http,image")
    assert _last(shared_dirs.data / "policy" / "decisions.jsonl")["scope"] == key
    ran = rkt(shared_dirs, "--insecure-options=image", "run", image_id, "--exec=/bin/echo")
    assert ran.returncode == 0, ran.stderr
    assert _last(shared_dirs.data / "private" / "decisions.jsonl")["scope"] == key

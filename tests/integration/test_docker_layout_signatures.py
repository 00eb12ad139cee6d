"""Signed ``oci:`` layouts, verified as the Docker reference the policy states (docs/adr/0028).

The real signers: ``skopeo copy --sign-by`` signs into the local docker-registry with a
``file://`` lookaside (tests/integration/_signed.py), and skopeo copies the signed image to
an ``oci:`` layout with its digest preserved (skopeo 1.9 cannot store signatures in a layout:
containers/image's layout destination refuses them); cosign attachments are made with
``openssl dgst -sha256 -sign`` by an ECDSA P-256 key (test_docker_sigstore.py) and copied
into the layout by skopeo as the ``sha256-<hex>.sig`` tag. The policy's ``[layouts]`` names
each layout's Docker reference; trustd reads the lookaside for that name, and the ``.sig``
entry of the layout's own index. Every refusal exits 254 with the reason and a fix, and
stores nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ConfigDirs
from tests.integration import _signed
from tests.integration._layouts import as_cosign_save, layout_of, policy_with_layouts
from tests.integration._registry import needs_registry_tools
from tests.integration._signed import Signed, ids, last_decision, trustd_dirs
from tests.integration.conftest import rkt
from tests.integration.test_docker_sigstore import _digest_of, _p256, attach_cosign_signature

pytestmark = needs_registry_tools
signed = _signed.signed  # the module-scoped signed registry these tests share


def _fetch(dirs: ConfigDirs, layout: Path, tag: str = "v1", *opts: str) -> tuple[int, str, str]:
    out = rkt(dirs, "fetch", "--full", *opts, f"oci:{layout}:{tag}")
    return out.returncode, out.stdout.strip(), out.stderr


def _layout(signed: Signed, image: str, tmp_path: Path, name: str = "lay") -> Path:
    dest = tmp_path / name
    layout_of(signed, image, dest)
    return dest


def test_a_layout_skopeo_signed_runs_as_the_name_the_policy_states(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    trustd_dirs(signed, shared_dirs, tmp_path)
    layout = _layout(signed, "ns/good:v1", tmp_path)
    policy_with_layouts(shared_dirs, {f"oci:{layout}:v1": f"docker://{signed.host}/ns/good:v1"})
    code, out, err = _fetch(shared_dirs, layout)
    assert code == 0, err
    image_id = out.splitlines()[-1]
    assert f"verified as docker://{signed.host}/ns/good:v1" in err
    decision = last_decision(shared_dirs.data / "policy" / "decisions.jsonl")
    signature = decision["signature"]
    assert isinstance(signature, dict)
    assert signature["format"] == "simple-signing"
    assert signature["docker_name"] == f"docker://{signed.host}/ns/good"
    assert signature["signers"] == signed.keys.good.upper()
    listed = json.loads(rkt(shared_dirs, "image", "list", "--format=json", "--full").stdout)
    (row,) = [r for r in listed if r["id"] == image_id]
    assert row["name"] == f"{signed.host.replace(':', '-')}/ns/good:v1"
    ran = rkt(shared_dirs, "run", image_id, "--exec=/bin/echo", "--", "root-checked")
    assert ran.returncode == 0, ran.stderr  # root converted the kept layers again
    assert "root-checked" in ran.stdout


def test_a_layout_without_a_tag_in_the_key_maps_each_tag(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    trustd_dirs(signed, shared_dirs, tmp_path)
    layout = _layout(signed, "ns/good:v1", tmp_path)
    policy_with_layouts(shared_dirs, {f"oci:{layout}": f"docker://{signed.host}/ns/good"})
    code, _out, err = _fetch(shared_dirs, layout)
    assert code == 0, err


REFUSALS = [
    # (image copied to the layout, the name the policy states, what trustd says)
    ("ns/unsigned:v1", "ns/unsigned:v1", "has no signature"),
    ("ns/untrusted:v1", "ns/untrusted:v1", "which is not trusted for prefix"),
    ("ns/identity:v1", "ns/identity:v1", "names another image"),
    ("ns/digest:v1", "ns/digest:v1", "is for manifest sha256:"),
    ("ns/good:v1", "ns/good:v2", "names another image"),  # signed as v1, stated as v2
    ("ns/good:v1", "elsewhere/app:v1", "no key is trusted for"),
]


@pytest.mark.parametrize(("image", "stated", "says"), REFUSALS)
def test_a_layout_refusal_names_the_reason_and_stores_nothing(
    signed: Signed,
    shared_dirs: ConfigDirs,
    tmp_path: Path,
    image: str,
    stated: str,
    says: str,
) -> None:
    trustd_dirs(signed, shared_dirs, tmp_path)
    layout = _layout(signed, image, tmp_path)
    policy_with_layouts(shared_dirs, {f"oci:{layout}:v1": f"docker://{signed.host}/{stated}"})
    before = ids(shared_dirs)
    code, _out, err = _fetch(shared_dirs, layout)
    assert code == 254, err
    assert says in err, err
    assert err.count("\n  ") >= 1, err  # the fix, on the hint line under the reason
    assert ids(shared_dirs) == before


def test_a_malformed_signature_is_refused(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    trustd_dirs(signed, shared_dirs, tmp_path)
    layout = _layout(signed, "ns/good:v1", tmp_path)
    digest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    garbled = signed.look / f"ns/garbled@{digest.replace(':', '=')}"
    garbled.mkdir(parents=True)
    (garbled / "signature-1").write_bytes(b"-----BEGIN PGP MESSAGE-----\nnot one\n")
    policy_with_layouts(shared_dirs, {f"oci:{layout}:v1": f"docker://{signed.host}/ns/garbled:v1"})
    before = ids(shared_dirs)
    code, _out, err = _fetch(shared_dirs, layout)
    assert code == 254, err
    assert "signature" in err
    assert "is not an OpenPGP signed message" in err, err
    assert "\n  simple signatures are made by" in err  # the fix
    assert ids(shared_dirs) == before


def test_an_unstated_layout_is_still_only_an_unsigned_import(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    trustd_dirs(signed, shared_dirs, tmp_path)
    layout = _layout(signed, "ns/good:v1", tmp_path)
    policy_with_layouts(shared_dirs, {"oci:/nowhere:v1": f"docker://{signed.host}/ns/good:v1"})
    before = ids(shared_dirs)
    code, _out, err = _fetch(shared_dirs, layout)
    assert code == 254
    assert "[layouts]" in err, err
    assert ids(shared_dirs) == before


@pytest.mark.parametrize("saved", [False, True], ids=["sig tag", "cosign save"])
def test_a_cosign_attachment_in_the_layout_is_verified(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path, saved: bool
) -> None:
    """The layout's cosign signatures: the entry skopeo copies in as the ``sha256-<hex>.sig``
    tag, or (``saved``) a layout as ``cosign save`` writes it, whose entries carry only a
    ``kind`` annotation (``dev.cosignproject.cosign/image`` and ``.../sigs``): ``oci:DIR``
    with no tag fetches that image. A payload signed by a key not trusted is refused, as from
    a registry, and stores nothing."""
    host = signed.host
    tag = "latest" if saved else "v1"
    trustd_dirs(signed, shared_dirs, tmp_path)
    private, public = _p256(tmp_path, "cosign")
    other, _ = _p256(tmp_path, "other")
    rkt(shared_dirs, "trust", "--prefix", f"docker://{host}/ns", "--skip-fingerprint-review",
        str(public), check=True)  # fmt: skip
    layouts, sources = {}, []
    for repo, key in (("ns/lcos", private), ("ns/lcos-other", other)):
        signed.push("base", f"{repo}:{tag}")
        digest = _digest_of(host, repo, tag)
        attach_cosign_signature(host, repo, f"{host}/{repo}:{tag}", key, digest)
        dest = tmp_path / repo.replace("/", "-")
        layout_of(signed, f"{repo}:{tag}", dest, tag)
        sig_tag = digest.replace(":", "-") + ".sig"
        layout_of(signed, f"{repo}:{sig_tag}", dest, sig_tag)  # skopeo writes the .sig entry
        if saved:
            as_cosign_save(dest, tag, sig_tag)
            layouts[f"oci:{dest}"] = f"docker://{host}/{repo}"  # the untagged fetch: latest
            sources.append(f"oci:{dest}")
        else:
            layouts[f"oci:{dest}:{tag}"] = f"docker://{host}/{repo}:{tag}"
            sources.append(f"oci:{dest}:{tag}")
    policy_with_layouts(shared_dirs, layouts)
    fetched = rkt(shared_dirs, "fetch", "--full", sources[0])
    assert fetched.returncode == 0, fetched.stderr
    assert f"verified as docker://{host}/ns/lcos:{tag}" in fetched.stderr
    decision = last_decision(shared_dirs.data / "policy" / "decisions.jsonl")
    assert isinstance(decision["signature"], dict)
    assert decision["signature"]["format"] == "sigstore"
    ran = rkt(shared_dirs, "run", fetched.stdout.split()[-1], "--exec=/bin/echo")
    assert ran.returncode == 0, ran.stderr
    before = ids(shared_dirs)
    refused = rkt(shared_dirs, "fetch", "--full", sources[1])
    assert refused.returncode == 254
    assert "was not made by a key trusted for" in refused.stderr, refused.stderr
    assert ids(shared_dirs) == before


def test_insecure_options_image_imports_a_stated_layout_unsigned_under_its_directory(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    """The recorded opt-out skips the check, as for docker://; the image is not stored under
    the stated name (nothing vouches for it), but under its directory's, as insecure."""
    trustd_dirs(signed, shared_dirs, tmp_path)
    layout = _layout(signed, "ns/unsigned:v1", tmp_path, "plain")
    policy_with_layouts(
        shared_dirs,
        {f"oci:{layout}:v1": f"docker://{signed.host}/ns/unsigned:v1"},
        '[scopes."plain".run]\ninsecure_options = ["image"]\n',
    )
    code, out, err = _fetch(shared_dirs, layout, "v1", "--insecure-options=image")
    assert code == 0, err
    listed = json.loads(rkt(shared_dirs, "image", "list", "--format=json", "--full").stdout)
    (row,) = [r for r in listed if r["id"] == out.splitlines()[-1]]
    assert row["name"].startswith("plain")


def test_a_relative_layout_path_is_stated_by_its_absolute_key(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    import subprocess  # noqa: PLC0415

    from tests.integration.conftest import RKT  # noqa: PLC0415

    trustd_dirs(signed, shared_dirs, tmp_path)
    layout = _layout(signed, "ns/good:v1", tmp_path)
    policy_with_layouts(shared_dirs, {f"oci:{layout}:v1": f"docker://{signed.host}/ns/good:v1"})
    out = subprocess.run(
        [RKT, *shared_dirs.flags(), "fetch", "oci:lay:v1"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert f"verified as docker://{signed.host}/ns/good:v1 (oci:{layout}:v1)" in out.stderr


def test_a_docker_archive_says_why_it_is_not_verified(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    trustd_dirs(signed, shared_dirs, tmp_path)
    archive = tmp_path / "a.tar"
    out = signed.skopeo(
        "copy", "--quiet", "--src-tls-verify=false", "--override-arch", "amd64",
        f"docker://{signed.host}/ns/good:v1", f"docker-archive:{archive}:ns/good:v1",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    before = ids(shared_dirs)
    refused = rkt(shared_dirs, "fetch", f"docker-archive:{archive}")
    assert refused.returncode == 254
    assert "signatures are not read from docker-archive: files" in refused.stderr
    assert "[layouts]" in refused.stderr
    assert ids(shared_dirs) == before


def test_skopeo_reads_no_signature_for_a_layout_so_trustd_needs_the_stated_name(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    """containers/image's oci: source has no signatures (impl.NoSignatures): skopeo refuses
    a signedBy requirement on the layout whatever the lookaside holds, the verdict ADR 0028
    departs from only where the policy states the Docker reference."""
    layout = _layout(signed, "ns/good:v1", tmp_path)
    keyring = tmp_path / "good.gpg"
    keyring.write_bytes(signed.keys.gpg.export(signed.keys.good, armor=False))
    policy = tmp_path / "policy.json"
    identity = {"type": "exactReference", "dockerReference": f"{signed.host}/ns/good:v1"}
    requirement = [
        {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(keyring),
         "signedIdentity": identity}
    ]  # fmt: skip
    policy.write_text(
        json.dumps({"default": [{"type": "reject"}], "transports": {"oci": {"": requirement}}})
    )
    out = signed.skopeo(
        "--policy", str(policy), "--registries.d", str(signed.registries_d), "copy", "--quiet",
        f"oci:{layout}:v1", f"oci:{tmp_path / 'out'}:x",
    )  # fmt: skip
    assert out.returncode != 0
    assert "A signature was required, but no signature exists" in out.stderr, out.stderr
    trustd_dirs(signed, shared_dirs, tmp_path)
    policy_with_layouts(shared_dirs, {f"oci:{layout}:v1": f"docker://{signed.host}/ns/good:v1"})
    code, _out, err = _fetch(shared_dirs, layout)
    assert code == 0, err


def test_skopeo_cannot_sign_into_a_layout_so_the_tests_sign_for_the_registry_name(
    signed: Signed, tmp_path: Path
) -> None:
    """Why these tests sign with ``copy --sign-by`` to the registry and copy the image to a
    layout with ``--preserve-digests``: skopeo 1.9 finds no Docker name for a layout, and
    given one, cannot store a signature in it."""
    cases = [
        ((), "Cannot determine canonical Docker reference"),
        (("--sign-identity", f"{signed.host}/ns/good:v1"), "Pushing signatures for OCI images"),
    ]
    for identity, says in cases:
        out = signed.skopeo(
            "copy", "--quiet", "--registries.d", str(signed.registries_d), *identity,
            "--sign-by", signed.keys.good, f"oci:{signed.layout}:base", f"oci:{tmp_path / 'x'}:v1",
        )  # fmt: skip
        assert out.returncode != 0
        assert says in out.stderr, out.stderr

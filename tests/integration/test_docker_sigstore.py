"""Sigstore (cosign) signatures, made the way cosign documents for external signers (issue #12).

Debian's skopeo is built with sigstore disabled, so the payload is signed with ``openssl dgst
-sha256 -sign`` by an ECDSA P-256 key and attached as the ``sha256-<digest>.sig`` image with
the ``dev.cosignproject.cosign/signature`` annotation, pushed to the local registry.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ConfigDirs
from tests.integration import _signed
from tests.integration._registry import needs_registry_tools, run
from tests.integration._signed import (
    Signed,
    fetch,
    ids,
    registry_manifest,
    trustd_dirs,
)
from tests.integration.conftest import rkt

pytestmark = needs_registry_tools
signed = _signed.signed  # the module-scoped signed registry these tests share


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

    return "sha256:" + hashlib.sha256(registry_manifest(host, repo, tag)).hexdigest()


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
    trustd_dirs(signed, shared_dirs, tmp_path)
    _trust_pem(signed, shared_dirs, cosign_keys["pub"])
    listed = json.loads(rkt(shared_dirs, "trust", "list", "--format=json", check=True).stdout)
    assert any(r["key_type"] == "ecdsa-p256" for r in listed)
    image_id = fetch(signed, shared_dirs, "ns/cosign:v1", "--insecure-options=http")
    log = (shared_dirs.data / "policy" / "decisions.jsonl").read_text().splitlines()
    assert json.loads(log[-1])["decision"]["signature"]["format"] == "sigstore"
    ran = rkt(shared_dirs, "run", image_id, "--exec=/bin/echo")
    assert ran.returncode == 0, ran.stderr


def test_a_cosign_signature_by_an_untrusted_key_is_refused(
    signed: Signed, cosign_keys: dict[str, Path], shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    trustd_dirs(signed, shared_dirs, tmp_path)
    _trust_pem(signed, shared_dirs, cosign_keys["pub"])
    before = ids(shared_dirs)
    out = rkt(
        shared_dirs,
        "fetch",
        "--insecure-options=http",
        f"docker://{signed.host}/ns/cosign-other:v1",
    )
    assert out.returncode == 254
    assert "was not made by a key trusted for" in out.stderr, out.stderr
    assert ids(shared_dirs) == before


def test_two_of_two_counts_signers_across_formats(
    signed: Signed, cosign_keys: dict[str, Path], shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    """ns/both:v1 is signed by skopeo (OpenPGP) and by a cosign key: threshold 2 passes;
    ns/cosign:v1 (one signer) does not."""
    trustd_dirs(signed, shared_dirs, tmp_path)
    _trust_pem(signed, shared_dirs, cosign_keys["pub"])
    from tests._policy import install_policy, policy_for_tests  # noqa: PLC0415

    install_policy(
        shared_dirs.system, policy_for_tests().replace("threshold = 1 ", "threshold = 2 ")
    )
    image_id = fetch(signed, shared_dirs, "ns/both:v1", "--insecure-options=http")
    ran = rkt(shared_dirs, "run", image_id, "--exec=/bin/echo")
    assert ran.returncode == 0, ran.stderr
    one = rkt(
        shared_dirs, "fetch", "--insecure-options=http", f"docker://{signed.host}/ns/cosign:v1"
    )
    assert one.returncode == 254
    assert "1 of 2 required signature(s)" in one.stderr, one.stderr

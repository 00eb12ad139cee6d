"""``docker://`` transport against Debian's real ``docker-registry``: plain HTTP, TLS, token auth.

Also the two fakes (a blob whose bytes do not match its digest, a registry that stalls). The
registries, the images and the ``world`` they share are built by ``tests.integration._registry``;
conversion details and ``rkt run`` are in test_docker_registry_convert.py.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests._https import LOCAL_NAMES, LocalServer, reply, stall
from tests.integration._registry import (
    World,
    aci_names,
    job,
    needs_registry_tools,
    run,
    start_registry,
)
from trustd.shared.errors import RemoteLiedError, TransportError
from trustd.shared.insecure import Insecure
from trustd.shared.store import ImageStore
from trustd.unprivileged.docker import RegistryLimits, fetch_docker
from trustd.unprivileged.transport import Limits

pytestmark = needs_registry_tools
USER, PASSWORD = "puller", "s3cret"


def test_plain_http_fetch_converts_and_records_the_digest(world: World, store: ImageStore) -> None:
    record = fetch_docker(f"docker://{world.plain.host}/busybox", job(store))
    assert record.name == f"127.0.0.1-{world.plain.host.split(':')[1]}/busybox"
    assert record.label("version") == "latest" and record.label("arch") == "amd64"
    assert record.provenance.insecure and record.provenance.source_digest.startswith("sha256:")
    assert record.source == f"docker://{world.plain.host}/busybox:latest"
    names = aci_names(store, record.key)
    assert names["rootfs/bin/sh"].issym() and names["rootfs/bin/busybox"].isfile()
    assert list(store.layout.tmp.iterdir()) == []  # layer blobs removed after conversion


def test_http_needs_the_insecure_option(world: World, store: ImageStore) -> None:
    with pytest.raises(TransportError) as err:
        fetch_docker(f"docker://{world.plain.host}/busybox", job(store, Insecure.IMAGE))
    assert "--insecure-options=http" in err.value.hint
    assert store.images() == []


def test_digest_pinned_reference_is_recorded_as_such(world: World, store: ImageStore) -> None:
    ref = f"docker://{world.plain.host}/busybox@{world.amd_digest}"
    record = fetch_docker(ref, job(store))
    assert record.source == ref and record.provenance.source_digest == world.amd_digest
    assert record.label("version") is None


def test_manifest_list_picks_this_hosts_platform(world: World, store: ImageStore) -> None:
    record = fetch_docker(f"docker://{world.plain.host}/busybox:multiarch", job(store))
    assert record.label("arch") == "amd64"
    assert record.provenance.source_digest == world.amd_digest


def test_tls_registry_with_a_trustme_certificate(
    world: World, store: ImageStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert(*LOCAL_NAMES)
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    tls = f"  tls:\n    certificate: {tmp_path / 'cert.pem'}\n    key: {tmp_path / 'key.pem'}\n"
    reg = start_registry(tmp_path / "tls", world.storage, tls)
    try:
        with pytest.raises(TransportError, match="certificate"):
            fetch_docker(f"docker://{reg.host}/busybox", job(store, Insecure.IMAGE))
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
        record = fetch_docker(f"docker://{reg.host}/busybox", job(store, Insecure.IMAGE))
        assert record.label("arch") == "amd64"
    finally:
        reg.stop()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """Signs registry tokens (RS256, x5c) with a self-signed certificate."""

    def __init__(self, directory: Path) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trustd test token issuer")])
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.bundle = directory / "token-root.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def token(self, scope: str) -> str:
        kind, name, actions = scope.split(":")
        header = {
            "typ": "JWT",
            "alg": "RS256",
            "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        now = int(time.time())
        claims = {
            "iss": "trustd-test-issuer",
            "sub": USER,
            "aud": "trustd-test",
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": os.urandom(8).hex(),
            "access": [{"type": kind, "name": name, "actions": actions.split(",")}],
        }
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        sig = self.key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing}.{_b64(sig)}"


def test_token_auth_with_dockerauth_credentials(
    world: World, store: ImageStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trustd.unprivileged.fetch._auth import docker_credentials, load_auth  # noqa: PLC0415

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    issuer = TokenIssuer(tmp_path)
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    with LocalServer(tls=ca.issue_cert(*LOCAL_NAMES)) as realm:

        def token(req: Any) -> None:
            query = dict(p.split("=", 1) for p in req.path.split("?", 1)[1].split("&"))
            if req.headers.get("Authorization") != expected:
                reply(b"{}", status=401)(req)
                return
            scope = urllib.parse.unquote(query["scope"])
            reply(json.dumps({"token": issuer.token(scope)}).encode())(req)

        realm.routes["/token"] = token
        auth = (
            "auth:\n  token:\n"
            f"    realm: {realm.url('/token')}\n    service: trustd-test\n"
            f"    issuer: trustd-test-issuer\n    rootcertbundle: {issuer.bundle}\n"
        )
        reg = start_registry(tmp_path / "token", world.storage, auth)
        try:
            with pytest.raises(TransportError, match="token server"):
                fetch_docker(f"docker://{reg.host}/busybox", job(store))
            config = tmp_path / "etc-rkt"
            (config / "auth.d").mkdir(parents=True)
            (config / "auth.d" / "reg.json").write_text(
                json.dumps(
                    {
                        "rktKind": "dockerAuth",
                        "rktVersion": "v1",
                        "registries": [reg.host],
                        "credentials": {"user": USER, "password": PASSWORD},
                    }
                )
            )
            creds = lambda host: docker_credentials(host, load_auth((config,)))  # noqa: E731
            record = fetch_docker(f"docker://{reg.host}/busybox", job(store, credentials=creds))
            assert record.label("arch") == "amd64"
            assert any(r.headers.get("authorization") == expected for r in realm.recorded)
        finally:
            reg.stop()


def test_blob_with_a_wrong_digest_is_refused_and_nothing_is_stored(store: ImageStore) -> None:
    config = json.dumps({"os": "linux", "architecture": "amd64", "config": {}}).encode()
    layer = b"not the layer the manifest names"
    claimed = "sha256:" + hashlib.sha256(b"the real layer").hexdigest()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": claimed,
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    with LocalServer() as srv:
        srv.routes["/v2/"] = reply(b"{}")
        srv.routes["/v2/bad/manifests/latest"] = reply(
            manifest, headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
        )
        srv.routes[f"/v2/bad/blobs/{config_digest}"] = reply(config)
        srv.routes[f"/v2/bad/blobs/{claimed}"] = reply(layer)
        with pytest.raises(RemoteLiedError, match="digest mismatch"):
            fetch_docker(f"docker://127.0.0.1:{srv.port}/bad", job(store))
    assert store.images() == [] and list(store.layout.tmp.iterdir()) == []


def test_a_stalled_registry_times_out_cleanly(store: ImageStore) -> None:
    short = Limits(max_bytes=1 << 20, connect_timeout=1, total_timeout=1.5)
    with LocalServer() as srv:
        srv.routes["/v2/"] = stall()
        with pytest.raises(TransportError, match=r"did not finish|timed out"):
            fetch_docker(
                f"docker://127.0.0.1:{srv.port}/slow",
                job(store, limits=RegistryLimits(small=short, blob=short)),
            )
    assert store.images() == []


def test_update_keeps_an_unchanged_image_without_downloading_layers(
    world: World, store: ImageStore, tmp_path: Path
) -> None:
    """``--pull-policy=update`` (the default) asks for the manifest only; a tag that moved
    downloads again. The real registry's access log counts the blob GETs."""
    reg = start_registry(tmp_path / "counted", world.storage, log_level="info")
    try:
        url = f"docker://{reg.host}/busybox:moving"
        run(
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"oci:{world.layout}:base",
            f"docker://{reg.host}/busybox:moving",
        )
        first = fetch_docker(url, job(store))
        blobs = reg.gets("/blobs/")
        assert blobs >= 2  # the config and the layer
        again = fetch_docker(url, job(store))
        assert again.key == first.key and reg.gets("/blobs/") == blobs
        assert reg.gets("/manifests/moving") == 2
        assert store.index.remote(again.source) is not None
        run(
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"oci:{world.layout}:multi",
            f"docker://{reg.host}/busybox:moving",
        )
        moved = fetch_docker(url, job(store))
        assert moved.key != first.key and reg.gets("/blobs/") > blobs
        row = store.index.remote(url)
        assert row is not None and row[0] == moved.key
        assert row[1] == moved.provenance.source_digest
    finally:
        reg.stop()


def _one_layer_image() -> tuple[bytes, bytes, bytes]:
    """(manifest, config, layer) of a small valid image: one layer with a 64 KiB file."""
    payload = os.urandom(64 * 1024)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("data/blob")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    layer = buf.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "os": "linux",
            "architecture": "amd64",
            "config": {"Cmd": ["/data/blob"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": diff_id,
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    return manifest, config, layer


def test_an_interrupted_layer_resumes_with_range(store: ImageStore) -> None:
    """A fake, because the real registry cannot hang up mid-blob on purpose: the first answer
    announces the whole layer and stops halfway; the second attempt must ask for the rest."""
    manifest, config, layer = _one_layer_image()
    doc = json.loads(manifest)
    layer_digest = doc["layers"][0]["digest"]
    half = len(layer) // 2

    def blob(req: Any) -> None:
        wanted = req.headers.get("Range")
        if wanted is None:  # the first attempt: cut short
            req.send_response(200)
            req.send_header("Content-Length", str(len(layer)))
            req.send_header("Connection", "close")
            req.end_headers()
            req.wfile.write(layer[:half])
            req.wfile.flush()
            req.close_connection = True
            return
        start = int(wanted.removeprefix("bytes=").rstrip("-"))
        reply(
            layer[start:],
            status=206,
            headers={"Content-Range": f"bytes {start}-{len(layer) - 1}/{len(layer)}"},
        )(req)

    with LocalServer() as srv:
        srv.routes["/v2/"] = reply(b"{}")
        srv.routes["/v2/cut/manifests/latest"] = reply(
            manifest, headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
        )
        srv.routes[f"/v2/cut/blobs/{doc['config']['digest']}"] = reply(config)
        srv.routes[f"/v2/cut/blobs/{layer_digest}"] = blob
        url = f"docker://127.0.0.1:{srv.port}/cut"
        with pytest.raises(TransportError):
            fetch_docker(url, job(store))
        kept = list(store.layout.tmp.iterdir())
        assert [p.name for p in kept] == [f"docker-blob-{layer_digest.replace(':', '-')}"]
        assert kept[0].stat().st_size == half
        record = fetch_docker(url, job(store))
        blob_gets = [r for r in srv.recorded if r.path.endswith(layer_digest)]
    assert [r.headers.get("range") for r in blob_gets] == [None, f"bytes={half}-"]
    assert [r.key for r in store.images()] == [record.key]
    assert record.provenance.source_digest == "sha256:" + hashlib.sha256(manifest).hexdigest()
    assert list(store.layout.tmp.iterdir()) == []

"""Signed OCI layouts for the layout tests (docs/adr/0028): made from the shared signed
registry (tests/integration/_signed.py) with Debian's skopeo, digests preserved, so the
simple signatures ``skopeo copy --sign-by`` wrote to the file:// lookaside cover them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.conftest import ConfigDirs
from tests.integration._signed import Signed


def layout_of(signed: Signed, image: str, dest: Path, tag: str = "v1") -> str:
    """``docker://HOST/image`` copied to ``oci:dest:tag`` with its digest; that digest."""
    out = signed.skopeo(
        "copy",
        "--quiet",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--override-arch",
        "amd64",
        f"docker://{signed.host}/{image}",
        f"oci:{dest}:{tag}",
    )
    assert out.returncode == 0, out.stderr
    return manifest_digest(dest, tag)


def manifest_digest(layout: Path, tag: str) -> str:
    index = json.loads((layout / "index.json").read_text())
    (entry,) = [
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    ]
    return str(entry["digest"])


def blob(layout: Path, digest: str) -> Path:
    algo, _, hexpart = digest.partition(":")
    return layout / "blobs" / algo / hexpart


def layer_digests(layout: Path, tag: str) -> list[str]:
    manifest = json.loads(blob(layout, manifest_digest(layout, tag)).read_bytes())
    return [layer["digest"] for layer in manifest["layers"]]


def policy_with_layouts(dirs: ConfigDirs, entries: dict[str, str], extra: str = "") -> None:
    """The test policy with a ``[layouts]`` table (and ``extra`` TOML before it)."""
    from tests._policy import install_policy, policy_for_tests  # noqa: PLC0415

    table = "\n".join(f'"{k}" = "{v}"' for k, v in entries.items())
    install_policy(dirs.system, f"{policy_for_tests()}\n{extra}\n[layouts]\n{table}\n")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def as_cosign_save(layout: Path, image_tag: str, sig_tag: str) -> None:
    """Rewrite a layout's ``index.json`` the way ``cosign save`` writes it (no cosign here:
    sigstore/cosign ``pkg/oci/layout/write.go`` appends the image and its signature image to
    an empty index, each with only a ``kind`` annotation and no ref name). The blobs stay."""
    index = json.loads((layout / "index.json").read_text())
    kinds = {image_tag: "dev.cosignproject.cosign/image", sig_tag: "dev.cosignproject.cosign/sigs"}
    manifests = []
    for entry in index["manifests"]:
        tag = entry.get("annotations", {}).get("org.opencontainers.image.ref.name")
        manifests.append({**entry, "annotations": {"kind": kinds[tag]}})
    (layout / "index.json").write_text(json.dumps({**index, "manifests": manifests}))

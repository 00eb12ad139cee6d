"""The signed registry the docker:// signature tests share (issue #12, CONVENTIONS 13).

skopeo signs (``copy --sign-by`` with a registries.d ``lookaside-staging: file://…``, and
``standalone-sign`` for the signatures a copy cannot make: another identity, a manifest list
instance) into the local docker-registry; trustd fetches with the key trusted for the
``docker://`` prefix and the same registries.d under its config dir.

Images: ``ns/good:v1`` (signed by the trusted key), ``ns/unsigned:v1``, ``ns/untrusted:v1``
(another key), ``ns/identity:v1`` (signed for ``ns/other:v1``), ``ns/digest:v1`` (a signature
over another digest), ``ns/moved:v1`` (the tag moved after signing), ``ns/list:v1`` (a manifest
list whose amd64 instance is signed).
"""

from __future__ import annotations

import hashlib
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
    put_manifest_list,
    start_registry,
)
from tests.integration.conftest import rkt


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
        src = self.work / "m.json"
        src.write_bytes(manifest)
        digest = hashlib.sha256(manifest).hexdigest()
        repo = repo_tag.split(":", maxsplit=1)[0]
        dest = self.look / f"{repo}@sha256={digest}" / "signature-1"
        dest.parent.mkdir(parents=True, exist_ok=True)
        out = self.skopeo("standalone-sign", str(src), identity, fpr, "--output", str(dest))
        assert out.returncode == 0, out.stderr
        return dest


def registry_manifest(host: str, repo: str, ref: str) -> bytes:
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
        base = registry_manifest(registry.host, "ns/identity", "v1")
        world.standalone("ns/identity:v1", base, f"{registry.host}/ns/other:v1", keys.good)
        # another digest: a signature over base's manifest, filed under multi's digest
        world.push("multi", "ns/digest:v1")
        multi = registry_manifest(registry.host, "ns/digest", "v1")
        sig = world.standalone("ns/digest:v1", base, f"{registry.host}/ns/digest:v1", keys.good)
        wrong = look / f"ns/digest@sha256={hashlib.sha256(multi).hexdigest()}"
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
        amd_manifest = registry_manifest(registry.host, "ns/list", amd["digest"])
        world.standalone("ns/list:v1", amd_manifest, f"{registry.host}/ns/list:v1", keys.good)
        yield world
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)


def trustd_dirs(signed: Signed, dirs: ConfigDirs, tmp_path: Path) -> None:
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


def ids(dirs: ConfigDirs) -> list[str]:
    out = rkt(dirs, "image", "list", "--format=json", "--full")
    return sorted(r["id"] for r in json.loads(out.stdout)) if out.returncode == 0 else []


def fetch(signed: Signed, dirs: ConfigDirs, image: str, *opts: str) -> str:
    out = rkt(dirs, "fetch", "--full", *opts, f"docker://{signed.host}/{image}")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def require(dirs: ConfigDirs, extra: str) -> None:
    from tests._policy import install_policy, policy_for_tests  # noqa: PLC0415

    text = policy_for_tests().replace("threshold = 1 ", f"threshold = 1\n{extra}\n", 1)
    assert extra in text
    install_policy(dirs.system, text)


def with_scope(dirs: ConfigDirs, key: str, require: str) -> None:
    from tests._policy import install_policy, policy_for_tests  # noqa: PLC0415

    install_policy(dirs.system, policy_for_tests() + f'\n[scopes."{key}".require]\n{require}\n')


def last_decision(path: Path) -> dict[str, object]:
    return dict(json.loads(path.read_text().splitlines()[-1])["decision"])


def private_state(dirs: ConfigDirs) -> list[str]:
    """Rendered trees (and render stages) and pods that got past prepare (a refused
    prepare leaves its embryo in ``pods/garbage``, as rkt does)."""
    pods = [p for p in (dirs.data / "pods").glob("*") if p.name != "garbage"]
    return sorted(
        str(entry.relative_to(dirs.data))
        for parent in [dirs.data / "private" / "tree", *pods]
        if parent.is_dir()
        for entry in parent.iterdir()
    )

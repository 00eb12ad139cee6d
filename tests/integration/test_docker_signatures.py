"""Simple signing, both ways, with Debian's skopeo 1.9 (issue #12, CONVENTIONS 13).

skopeo signs into the local docker-registry (tests/integration/_signed.py); trustd fetches
with the key trusted for the ``docker://`` prefix and the same registries.d under its config
dir. For every case, ``skopeo copy --policy P`` with the equivalent ``signedBy`` requirement
reaches the same verdict, for the same reason. Every refusal leaves the store unchanged.
Then: running signed images, identity rules and formats in the policy, and ``docker://``
scopes at both gates. Forged store content: test_docker_sig_forgery.py; cosign signatures:
test_docker_sigstore.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ConfigDirs
from tests.integration import _signed
from tests.integration._registry import needs_registry_tools
from tests.integration._signed import (
    Signed,
    fetch,
    ids,
    last_decision,
    require,
    trustd_dirs,
    with_scope,
)
from tests.integration.conftest import rkt

pytestmark = needs_registry_tools
signed = _signed.signed  # the module-scoped signed registry these tests share


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
    trustd_dirs(signed, shared_dirs, tmp_path)
    ok, why = _skopeo_verdict(signed, image, tmp_path)
    assert ok == accepted, why
    assert skopeo_says in why
    before = ids(shared_dirs)
    out = rkt(shared_dirs, "fetch", "--insecure-options=http", f"docker://{signed.host}/{image}")
    if accepted:
        assert out.returncode == 0, out.stderr
        listed = json.loads(rkt(shared_dirs, "image", "list", "--format=json").stdout)
        assert len(listed) == len(before) + 1
        return
    assert out.returncode == 254, out.stderr
    assert trustd_says in out.stderr
    assert ids(shared_dirs) == before  # the refusal stored nothing


def test_a_key_trusted_for_the_port_bearing_prefix_lists_as_typed(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    trustd_dirs(signed, shared_dirs, tmp_path)
    listed = json.loads(rkt(shared_dirs, "trust", "list", "--format=json", check=True).stdout)
    prefixes = {r["prefix"] for r in listed}
    assert f"docker://{signed.host}/ns" in prefixes
    assert not any("-" + signed.host.rsplit(":", 1)[1] in (p or "") for p in prefixes)


def test_a_signed_docker_image_runs_after_root_verifies_its_signature_again(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    trustd_dirs(signed, shared_dirs, tmp_path)
    image_id = fetch(signed, shared_dirs, "ns/good:v1", "--insecure-options=http")
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

    trustd_dirs(signed, shared_dirs, tmp_path)
    image_id = fetch(signed, shared_dirs, "ns/list:v1", "--insecure-options=http")
    blob = ImageStore(shared_dirs.data).layout.blob_dir(image_id[: len("sha512-") + 64])
    assert any(p.name.startswith("sha256-") for p in blob.iterdir())
    ran = rkt(shared_dirs, "run", image_id, "--exec=/bin/echo", "--", "converted-by-root")
    assert ran.returncode == 0, ran.stderr
    assert "converted-by-root" in ran.stdout
    rendered = [p.name for p in (shared_dirs.data / "private" / "tree").iterdir()]
    assert [n for n in rendered if n.startswith(image_id)], rendered
    other = fetch(signed, shared_dirs, "ns/good:v1", "--insecure-options=http")
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
    trustd_dirs(signed, shared_dirs, tmp_path)
    image_id = fetch(signed, shared_dirs, "ns/good:v1", "--insecure-options=http")
    prefix = f"docker://{signed.host}/ns"
    rkt(shared_dirs, "trust", "remove", "--prefix", prefix, signed.keys.good, check=True)
    ran = rkt(shared_dirs, "run", image_id, "--exec=/bin/echo")
    assert ran.returncode == 254
    assert "not trusted for prefix" in ran.stderr, ran.stderr


def test_an_identity_rule_in_the_policy_admits_what_the_default_rule_refuses(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    """ns/identity:v1 is signed for ns/other:v1: refused by matchRepoDigestOrExact (the table
    above), accepted at fetch and at run under exactReference naming what was signed."""
    trustd_dirs(signed, shared_dirs, tmp_path)
    exact = f'{{type = "exactReference", docker_reference = "{signed.host}/ns/other:v1"}}'
    require(shared_dirs, f"signed_identity = {exact}")
    image_id = fetch(signed, shared_dirs, "ns/identity:v1", "--insecure-options=http")
    ran = rkt(shared_dirs, "run", image_id, "--exec=/bin/echo")
    assert ran.returncode == 0, ran.stderr


def test_a_scope_that_counts_only_openpgp_acis_refuses_simple_signing(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    trustd_dirs(signed, shared_dirs, tmp_path)
    require(shared_dirs, 'formats = ["openpgp"]')
    before = ids(shared_dirs)
    out = rkt(shared_dirs, "fetch", "--insecure-options=http", f"docker://{signed.host}/ns/good:v1")
    assert out.returncode == 254
    assert "signed in the simple-signing format; this scope counts openpgp" in out.stderr
    assert ids(shared_dirs) == before


def test_a_docker_scope_for_the_port_bearing_registry_decides_fetch_and_run(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    """A scope spelled as typed, ``docker://127.0.0.1:PORT/ns``, is the scope both gates
    decide a signed image by (issue #12); explain and check say so too."""
    trustd_dirs(signed, shared_dirs, tmp_path)
    key = f"docker://{signed.host}/ns"
    with_scope(shared_dirs, key, 'type = "signed"\nformats = ["simple-signing"]')
    image_id = fetch(signed, shared_dirs, "ns/good:v1", "--insecure-options=http")
    assert last_decision(shared_dirs.data / "policy" / "decisions.jsonl")["scope"] == key
    ran = rkt(shared_dirs, "run", image_id, "--exec=/bin/echo")
    assert ran.returncode == 0, ran.stderr
    run_decision = last_decision(shared_dirs.data / "private" / "decisions.jsonl")
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
    trustd_dirs(signed, shared_dirs, tmp_path)
    key = f"docker://{signed.host}/ns/good"
    with_scope(shared_dirs, key, 'type = "reject"')
    before = ids(shared_dirs)
    out = rkt(shared_dirs, "fetch", "--insecure-options=http", f"docker://{signed.host}/ns/good:v1")
    assert out.returncode == 254, out.stderr
    assert key in out.stderr, out.stderr
    assert signed.host.replace(":", "-") not in out.stderr  # hints spell it as typed
    assert ids(shared_dirs) == before
    with_scope(shared_dirs, key, 'type = "signed"')
    image_id = fetch(signed, shared_dirs, "ns/good:v1", "--insecure-options=http")
    first = rkt(shared_dirs, "run", image_id, "--exec=/bin/echo")  # stage1 is stored now too
    assert first.returncode == 0, first.stderr
    with_scope(shared_dirs, key, 'type = "reject"')
    stored = ids(shared_dirs)
    ran = rkt(shared_dirs, "run", image_id, "--exec=/bin/echo", "--", "must-not-run")
    assert ran.returncode == 254, ran.stderr
    assert "must-not-run" not in ran.stdout
    refused = last_decision(shared_dirs.data / "private" / "decisions.jsonl")
    assert refused["gate"] == "run" and refused["verdict"] == "deny" and refused["scope"] == key
    assert ids(shared_dirs) == stored


def test_a_scope_in_the_old_mangled_spelling_still_matches_and_lint_names_the_new_one(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    trustd_dirs(signed, shared_dirs, tmp_path)
    mangled = f"{signed.host.replace(':', '-')}/ns/good"
    with_scope(shared_dirs, mangled, 'type = "reject"')
    out = rkt(shared_dirs, "fetch", "--insecure-options=http", f"docker://{signed.host}/ns/good:v1")
    assert out.returncode == 254, out.stderr
    check = rkt(shared_dirs, "policy", "check", "--format=json")
    found = [f for f in json.loads(check.stdout)["findings"] if f["rule_id"] == "TD-POL-024"]
    assert found and f"docker://{signed.host}/ns/good" in found[0]["fix"], check.stdout


def test_an_unsigned_docker_image_is_judged_by_its_docker_scope_at_both_gates(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    """No evidence: both gates take the Docker name from the image's own manifest."""
    trustd_dirs(signed, shared_dirs, tmp_path)
    key = f"docker://{signed.host}/ns/unsigned"
    with_scope(shared_dirs, key, 'type = "accept-anything"')
    image_id = fetch(signed, shared_dirs, "ns/unsigned:v1", "--insecure-options=http,image")
    assert last_decision(shared_dirs.data / "policy" / "decisions.jsonl")["scope"] == key
    ran = rkt(shared_dirs, "--insecure-options=image", "run", image_id, "--exec=/bin/echo")
    assert ran.returncode == 0, ran.stderr
    assert last_decision(shared_dirs.data / "private" / "decisions.jsonl")["scope"] == key

"""Exact ``name:version`` scopes apply at the fetch and run gates (ADR 0008), as ``rkt policy
explain NAME:VERSION`` says; and the seccomp digest the TPM event records for a pod is the
one ``rkt policy explain`` prints for the same filter."""

from __future__ import annotations

import json
from pathlib import Path

from tests._busybox import busybox_aci
from tests._policy import SHIPPED, install_policy, policy_for_tests
from tests.conftest import ConfigDirs, Keys
from tests.integration._attest import attest_quote
from tests.integration.conftest import NAME, rkt

REJECT_2 = f'\n[scopes."{NAME}:2.0.0".require]\ntype = "reject"\n'


def _signed(keys: Keys, tmp_path: Path, version: str, tag: str = "") -> Path:
    files = {"etc/tag": f"{version}{tag}\n".encode()}
    aci = busybox_aci(tmp_path / f"bb-{version}{tag}.aci", NAME, version=version, files=files)
    keys.gpg.sign(keys.good, aci, Path(f"{aci}.asc"))
    return aci


def _ids(dirs: ConfigDirs) -> list[str]:
    listed = json.loads(rkt(dirs, "image", "list", "--format=json", "--full").stdout)
    return sorted(r["id"] for r in listed)


def test_an_exact_name_version_scope_refuses_that_version_at_run_and_fetch(
    shared_dirs: ConfigDirs, image: str, keys: Keys, tmp_path: Path
) -> None:
    v2 = rkt(shared_dirs, "fetch", "--full", str(_signed(keys, tmp_path, "2.0.0")), check=True)
    v2_id = v2.stdout.strip()
    install_policy(shared_dirs.system, policy_for_tests() + REJECT_2)

    refused = rkt(shared_dirs, "run", v2_id, "--exec=/bin/true")
    assert refused.returncode == 254, refused.stderr
    assert f'image "{NAME}:2.0.0" refused by policy: {NAME}:2.0.0: signature failed' in (
        refused.stderr
    )
    assert rkt(shared_dirs, "run", image, "--exec=/bin/true").returncode == 0  # 1.0.0 runs

    explained = json.loads(
        rkt(shared_dirs, "policy", "explain", "--format=json", f"{NAME}:2.0.0", check=True).stdout
    )
    assert explained["scope"] == f"{NAME}:2.0.0"
    assert explained["require"]["type"] == "reject"
    other = json.loads(
        rkt(shared_dirs, "policy", "explain", "--format=json", f"{NAME}:1.0.0", check=True).stdout
    )
    assert other["scope"] == "default"

    before = _ids(shared_dirs)
    fetched = rkt(shared_dirs, "fetch", str(_signed(keys, tmp_path, "2.0.0", "-rebuilt")))
    assert fetched.returncode == 254
    assert "refused by policy" in fetched.stderr and f"{NAME}:2.0.0" in fetched.stderr
    assert _ids(shared_dirs) == before  # nothing stored
    rkt(shared_dirs, "fetch", str(_signed(keys, tmp_path, "1.0.1")), check=True)
    assert len(_ids(shared_dirs)) == len(before) + 1


def test_the_measured_seccomp_digest_is_the_one_policy_explain_prints(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    install_policy(shared_dirs.system, SHIPPED.read_text())  # seccomp = ["rkt-default"]
    uuid_file = tmp_path / "uuid"
    ok = rkt(shared_dirs, "run", f"--uuid-file-save={uuid_file}", image, "--exec=/bin/true")
    assert ok.returncode == 0, ok.stderr

    report = attest_quote(shared_dirs, tmp_path, "cd" * 10).report(shared_dirs)
    pod = next(s for s in report["pod_starts"] if s["pod"] == uuid_file.read_text().strip())
    isolation = next(e["data"] for e in pod["events"] if e["kind"] == "isolation")
    explained = json.loads(
        rkt(shared_dirs, "policy", "explain", "--format=json", NAME, check=True).stdout
    )
    assert isolation["seccomp_digest"] == explained["seccomp_digests"]["rkt-default"]
    text = rkt(shared_dirs, "policy", "explain", NAME, check=True).stdout
    assert f"run.seccomp: rkt-default {isolation['seccomp_digest']}" in text

"""Every pod start is measured before the app runs, and a remote verifier can prove it.

Real swtpm (embedded backend), real pods; the verifier is trustd's own pure-Python one, and
tpm2_checkquote (tpm2-tools) must accept the same bundle.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ConfigDirs
from tests.integration._attest import attest_quote
from tests.integration.conftest import RKT, rkt
from trustd.privileged.measure import stop_embedded

NONCE = "5eed0123456789abcdef"


@pytest.fixture
def measured(shared_dirs: ConfigDirs, image: str, tmp_path: Path) -> Iterator[str]:
    uuid_file = tmp_path / "uuid"
    rkt(shared_dirs, "run", f"--uuid-file-save={uuid_file}", image, "--exec=/bin/true", check=True)
    yield uuid_file.read_text().strip()
    stop_embedded(shared_dirs.data)


def test_pod_start_is_measured_quoted_and_verified(
    shared_dirs: ConfigDirs,
    measured: str,
    image: str,
    tmp_path: Path,
) -> None:
    record = json.loads((shared_dirs.data / "pods/run" / measured / "measurement.json").read_text())
    assert record["measured"] is True and record["backend"] == "swtpm" and record["pcr"] == 14
    quote = attest_quote(shared_dirs, tmp_path, NONCE)
    bundle, ak = quote.bundle, quote.ak
    checked = subprocess.run(
        [
            "tpm2_checkquote",
            "-u",
            str(ak),
            "-m",
            str(bundle / "quote.attest"),
            "-s",
            str(bundle / "quote.sig"),
            "-f",
            str(bundle / "quote.pcrs"),
            "-g",
            "sha256",
            "-q",
            NONCE,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    starts = quote.report(shared_dirs)["pod_starts"]
    (pod,) = [s for s in starts if s["pod"] == measured]
    events = {e["kind"]: e["data"] for e in pod["events"]}
    assert set(events) == {"stage1", "image", "pod-manifest", "isolation", "network", "policy"}
    assert events["image"]["image_id"].startswith(image) and events["image"]["signers"]
    assert len(events["image"]["image_id"]) == len("sha512-") + 128  # the full image ID
    assert events["isolation"]["seccomp"] != "disabled"
    wrong = quote.verify(shared_dirs, nonce="00" * 10)
    assert wrong.returncode == 254 and "'nonce' failed" in wrong.stderr


def test_policy_refuses_a_start_it_does_not_allow(
    shared_dirs: ConfigDirs, measured: str, tmp_path: Path
) -> None:
    quote = attest_quote(shared_dirs, tmp_path, NONCE)
    policy = tmp_path / "policy.toml"
    policy.write_text('signers = ["' + "0" * 40 + '"]\n')
    refused = quote.verify(shared_dirs, "--policy", str(policy))
    assert refused.returncode == 254 and "none of them allowed" in refused.stderr
    policy.write_text("signerz = []\n")
    typo = quote.verify(shared_dirs, "--policy", str(policy))
    assert typo.returncode == 254 and "signerz: unknown key" in typo.stderr


def test_a_dead_tpm_stops_the_run_unless_best_effort(
    shared_dirs: ConfigDirs,
    image: str,
    tmp_path: Path,
) -> None:
    (shared_dirs.local / "measure.json").write_text('{"tcti": "swtpm:host=127.0.0.1,port=9"}')
    refused = rkt(shared_dirs, "run", image, "--exec=/bin/true")
    assert refused.returncode == 254 and "measure" in refused.stderr.lower()
    assert not list((shared_dirs.data / "pods/run").iterdir())  # nothing ran
    (shared_dirs.local / "measure.json").write_text(
        '{"mode": "best-effort", "tcti": "swtpm:host=127.0.0.1,port=9"}'
    )
    uuid_file = tmp_path / "uuid"
    ran = rkt(shared_dirs, "run", f"--uuid-file-save={uuid_file}", image, "--exec=/bin/true")
    assert ran.returncode == 0, ran.stderr
    record = json.loads(
        (
            shared_dirs.data / "pods/run" / uuid_file.read_text().strip() / "measurement.json"
        ).read_text()
    )
    assert record["measured"] is False and record["reason"]


def test_replay_of_a_firmware_log() -> None:
    log = Path(__file__).parents[1] / "vectors/tpm2-tools/event-uefi-sha1-log.bin"
    if not log.exists():
        log = next((Path(__file__).parents[1] / "vectors/tpm2-tools").rglob("*uefi-sha1*.bin"))
    out = subprocess.run(
        [RKT, "attest", "replay", str(log), "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "sha1" in json.loads(out.stdout)

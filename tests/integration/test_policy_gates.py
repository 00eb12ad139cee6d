"""Under the shipped default policy, fetch and run are decided by it, and every decision is
in a hash-chained log: fetches in the group's ``policy/decisions.jsonl``, run gates in root's
``private/decisions.jsonl``, whose head the TPM event records."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests._aci import build_aci
from tests._policy import SHIPPED, install_policy
from tests.conftest import ConfigDirs, Keys
from tests.integration._attest import attest_quote
from tests.integration.conftest import rkt
from trustd.shared.policy.log import log_path, root_log_path, verify_chain


def test_the_shipped_policy_gates_fetch_and_run(
    shared_dirs: ConfigDirs, image: str, keys: Keys, tmp_path: Path
) -> None:
    install_policy(shared_dirs.system, SHIPPED.read_text())  # the default, unchanged
    fly = rkt(shared_dirs, "run", "--stage1-name=fly", image, "--exec=/bin/true")
    assert fly.returncode == 254
    assert "refused by policy: default: flavor failed" in fly.stderr
    assert "rkt policy explain" in fly.stderr

    unsigned = build_aci(tmp_path / "u.aci", "unsigned.example/app")
    refused = rkt(shared_dirs, "--insecure-options=image", "fetch", str(unsigned))
    assert refused.returncode == 254 and "refused by policy" in refused.stderr
    assert not [
        r
        for r in json.loads(rkt(shared_dirs, "image", "list", "--format=json").stdout)
        if r["name"].startswith("unsigned.example")
    ]

    uuid_file = tmp_path / "uuid"
    ok = rkt(shared_dirs, "run", f"--uuid-file-save={uuid_file}", image, "--exec=/bin/true")
    assert ok.returncode == 0, ok.stderr

    fetches = log_path(shared_dirs.data)
    verify_chain(fetches)
    decided = [json.loads(line)["decision"] for line in fetches.read_text().splitlines()]
    assert {d["verdict"] for d in decided} == {"allow", "deny"}
    assert {d["gate"] for d in decided} == {"fetch"}

    log = root_log_path(shared_dirs.data)  # root's: the run gates, and only they
    head = verify_chain(log)
    decided = [json.loads(line)["decision"] for line in log.read_text().splitlines()]
    assert {d["verdict"] for d in decided} == {"allow", "deny"}  # fly refused, then run
    assert {d["gate"] for d in decided} == {"run"}
    report = attest_quote(shared_dirs, tmp_path, "ab" * 10).report(shared_dirs)
    pod = next(s for s in report["pod_starts"] if s["pod"] == uuid_file.read_text().strip())
    policy_event = next(e["data"] for e in pod["events"] if e["kind"] == "policy")
    assert policy_event["decision_log_head"] == head
    assert policy_event["digest"].startswith("sha256-")

    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[1:]) + "\n")  # someone rewrites history
    tampered = subprocess.run(
        [
            ".venv/bin/python",
            "-c",
            f"from trustd.shared.policy.log import verify_chain; "
            f"verify_chain(__import__('pathlib').Path('{log}'))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert tampered.returncode != 0

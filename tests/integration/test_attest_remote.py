"""Remote attestation over loopback: ``rkt attest serve`` (root quotes with the real swtpm, an
unprivileged HTTPS server as rkt-attest talks to the network) and ``rkt attest verify
--remote`` / ``verify-fleet``, with trustme certificates and mutual TLS."""

from __future__ import annotations

import json
import pwd
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.conftest import ConfigDirs
from tests.integration.conftest import RKT, rkt
from trustd.privileged.measure import stop_embedded
from trustd.shared.attest import QuoteError, load_ak_pem
from trustd.shared.attest.remote import BOOT_MASK, verify_answer
from trustd.unprivileged.attest.client import challenge, tls_client


@dataclass(frozen=True)
class Attester:
    url: str
    ak: Path
    ca: Path
    client_cert: Path
    process: subprocess.Popen[str]


def _pem(tmp: Path, name: str, blob: Any) -> Path:
    path = tmp / name
    blob.write_to_path(str(path))
    return path


@pytest.fixture
def attester(shared_dirs: ConfigDirs, image: str, tmp_path: Path) -> Iterator[Attester]:
    tls = shared_dirs.data.parent / "tls"  # root reads these; rkt-attest never does
    tls.mkdir(mode=0o700)
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("verifier.example")
    cert = _pem(tls, "server.pem", server.cert_chain_pems[0])
    key = _pem(tls, "server.key", server.private_key_pem)
    ca_pem = _pem(tmp_path, "ca.pem", ca.cert_pem)
    client_pem = tmp_path / "client.pem"
    client.private_key_and_cert_chain_pem.write_to_path(str(client_pem))
    rkt(shared_dirs, "run", image, "--exec=/bin/true", check=True)
    ak = tmp_path / "ak.pem"
    rkt(shared_dirs, "attest", "ak", "--out", str(ak), check=True)
    argv = [RKT, *shared_dirs.flags(), "attest", "serve", "--listen=127.0.0.1:0"]
    argv += [f"--cert={cert}", f"--key={key}", f"--client-ca={ca_pem}"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"listening on (https://\S+) .*server pid (\d+)", line)
    assert match, line + (process.stderr.read() if process.stderr else "")
    try:
        yield Attester(match[1], ak, ca_pem, client_pem, process)
    finally:
        process.terminate()
        process.communicate(timeout=30)
        stop_embedded(shared_dirs.data)


def verify(dirs: ConfigDirs, a: Attester, *extra: str) -> subprocess.CompletedProcess[str]:
    return rkt(
        dirs,
        "attest",
        "verify",
        "--remote",
        a.url,
        "--ak",
        str(a.ak),
        f"--ca={a.ca}",
        f"--client-cert={a.client_cert}",
        *extra,
    )


def raw_answer(a: Attester, nonce: bytes) -> dict[str, Any]:
    return challenge(a.url, nonce, list(BOOT_MASK), tls_client(a.ca, a.client_cert, None))


def test_remote_challenge_is_verified_and_names_backend_and_enrolment(
    shared_dirs: ConfigDirs, attester: Attester, tmp_path: Path
) -> None:
    done = verify(shared_dirs, attester, "--format=json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["accepted"] is True
    assert report["backend"] == "software (swtpm), unverified claim"
    assert report["enrolment"] == "pinned"
    assert report["boot"] == {"appraised": False, "reason": "the attester sent no firmware log"}
    assert set(range(8)) <= set(report["pcrs"]) and 14 in report["pcrs"]
    (pod,) = [s for s in report["pod_starts"] if s["pod"]]
    assert {e["kind"] for e in pod["events"]} >= {"image", "isolation"}
    table = verify(shared_dirs, attester)
    assert table.returncode == 0, table.stderr
    assert "software (swtpm), unverified claim" in table.stdout and " yes " in table.stdout
    # the HTTPS server runs as rkt-attest, not root
    ps = subprocess.run(
        ["ps", "-o", "user=", "--ppid", str(attester.process.pid)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert ps.stdout.split() == [pwd.getpwnam("rkt-attest").pw_name]


def test_fleet_report_lists_every_node(
    shared_dirs: ConfigDirs, attester: Attester, tmp_path: Path
) -> None:
    nodes = tmp_path / "nodes.json"
    nodes.write_text(
        json.dumps(
            [
                {"url": attester.url, "ak": str(attester.ak)},
                {"url": "https://127.0.0.1:9", "ak": str(attester.ak)},
            ]
        )
    )
    done = rkt(
        shared_dirs,
        "attest",
        "verify-fleet",
        str(nodes),
        f"--ca={attester.ca}",
        f"--client-cert={attester.client_cert}",
        "--format=json",
    )
    assert done.returncode == 254
    good, down = json.loads(done.stdout)
    assert good["accepted"] is True and down["accepted"] is False
    assert "cannot reach" in down["error"]


def test_an_answer_to_another_nonce_is_refused(attester: Attester) -> None:
    """A replayed nonce: an answer recorded for one challenge does not answer the next."""
    old = secrets.token_bytes(16)
    answer = raw_answer(attester, old)
    ak = load_ak_pem(attester.ak.read_bytes(), source="ak.pem")

    def check(nonce: bytes) -> dict[str, Any]:
        return verify_answer(
            answer, source=attester.url, ak=ak, nonce=nonce, requested=BOOT_MASK, policy=None
        )

    assert check(old)["accepted"] is True
    with pytest.raises(QuoteError) as err:
        check(secrets.token_bytes(16))
    assert err.value.check == "nonce"
    with pytest.raises(Exception, match="answered before"):
        raw_answer(attester, old)  # and the attester will not quote the same nonce twice


def test_a_log_with_an_event_removed_is_refused(attester: Attester) -> None:
    nonce = secrets.token_bytes(16)
    answer = raw_answer(attester, nonce)
    records = json.loads(answer["trustd_event_log"])
    assert len(records) > 1
    answer["trustd_event_log"] = json.dumps(records[:-1])
    ak = load_ak_pem(attester.ak.read_bytes(), source="ak.pem")
    with pytest.raises(QuoteError) as err:
        verify_answer(answer, source="x", ak=ak, nonce=nonce, requested=BOOT_MASK, policy=None)
    assert err.value.check == "replay"


def test_hardware_required_refuses_the_swtpm(
    shared_dirs: ConfigDirs, attester: Attester, tmp_path: Path
) -> None:
    policy = tmp_path / "verifier.toml"
    policy.write_text("require_hardware_tpm = true\n")
    done = verify(shared_dirs, attester, f"--policy={policy}", "--format=json")
    assert done.returncode == 254
    report = json.loads(done.stdout)
    assert report["accepted"] is False
    assert report["policy_violations"] == [
        "the TPM is software (swtpm), unverified claim; the policy requires a hardware TPM"
    ]


def test_boot_policy_without_a_firmware_log_and_bad_policies_are_refused(
    shared_dirs: ConfigDirs, attester: Attester, tmp_path: Path
) -> None:
    policy = tmp_path / "verifier.toml"
    policy.write_text('[boot]\nsecure_boot = "enabled"\n')
    done = verify(shared_dirs, attester, f"--policy={policy}")
    assert done.returncode == 254
    assert "the attester sent no firmware log" in done.stdout
    policy.write_text("")
    empty = verify(shared_dirs, attester, f"--policy={policy}")
    assert empty.returncode != 0 and "empty" in empty.stderr
    policy.write_text('require_hardware_tpm = "yes"\n')
    mistyped = verify(shared_dirs, attester, f"--policy={policy}")
    assert mistyped.returncode != 0 and "require_hardware_tpm" in mistyped.stderr


def test_without_a_client_certificate_tls_is_refused(
    shared_dirs: ConfigDirs, attester: Attester
) -> None:
    done = rkt(
        shared_dirs,
        "attest",
        "verify",
        "--remote",
        attester.url,
        "--ak",
        str(attester.ak),
        f"--ca={attester.ca}",
        "--format=json",
    )
    assert done.returncode == 254
    report = json.loads(done.stdout)
    assert report["accepted"] is False and report["refused"] == "UserError"


def _enrol(dirs: ConfigDirs, tmp_path: Path, *anchor: str) -> Path:
    """identity, challenge, activate, enroll: the verifier's registry holds the AK after."""
    registry, identity = tmp_path / "registry", tmp_path / "identity"
    steps = [
        ("identity", "--out", str(identity)),
        ("challenge", str(identity), "--registry", str(registry), *anchor,
         "--out", str(tmp_path / "challenge.bin")),
        ("activate", str(tmp_path / "challenge.bin"), "--out", str(tmp_path / "secret.bin")),
        ("enroll", str(tmp_path / "challenge.bin"), str(tmp_path / "secret.bin"),
         "--registry", str(registry)),
    ]  # fmt: skip
    for step in steps:
        done = rkt(dirs, "attest", *step)
        assert done.returncode == 0, (step, done.stderr)
    return registry


def _verify_registered(
    dirs: ConfigDirs, a: Attester, registry: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    return rkt(
        dirs, "attest", "verify", "--remote", a.url, "--registry", str(registry),
        f"--ca={a.ca}", f"--client-cert={a.client_cert}", "--format=json", *extra,
    )  # fmt: skip


def test_a_remote_quote_is_checked_against_the_registered_ak(
    shared_dirs: ConfigDirs, attester: Attester, tmp_path: Path
) -> None:
    """The AK the registry enrolled verifies the answer (never the answer's own copy), and
    the report names the enrolment and what the EK certificate says the TPM is."""
    registry = _enrol(shared_dirs, tmp_path, "--ca", str(shared_dirs.data / "tpm/ek-ca.pem"))
    done = _verify_registered(shared_dirs, attester, registry)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["accepted"] is True and report["enrolment"] == "CA-anchored"
    assert report["backend"].startswith("software (swtpm), EK certificate issued by")
    policy = tmp_path / "hardware.toml"
    policy.write_text("require_hardware_tpm = true\n")
    refused = _verify_registered(shared_dirs, attester, registry, f"--policy={policy}")
    assert refused.returncode == 254
    assert "requires a hardware TPM" in refused.stdout + refused.stderr


def test_a_remote_quote_from_an_unregistered_ak_is_refused(
    shared_dirs: ConfigDirs, attester: Attester, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-registry"
    done = _verify_registered(shared_dirs, attester, empty)
    assert done.returncode == 254
    report = json.loads(done.stdout)
    assert report["accepted"] is False and "not enrolled" in report["error"]

"""AK provenance (issue #11 part 2): enrolment by credential activation, as Keylime does it.

Real embedded swtpm, manufactured by swtpm_setup with an EK certificate from its local CA;
tpm2-tools' MakeCredential and ActivateCredential interoperate with trustd's both ways.
"""

from __future__ import annotations

import datetime
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import ConfigDirs
from tests.integration.conftest import rkt
from trustd.privileged.measure import stop_embedded
from trustd.privileged.measure._aksecret import load_or_create
from trustd.privileged.measure._unixtpm import tools_tcti
from trustd.privileged.measure.measure import Measurer
from trustd.shared.attest.credential import make_credential, storage_key, strip_tpm2b
from trustd.shared.attest.registry import Identity, check_ak

NONCE = "0badc0de0123456789ab"


@dataclass(frozen=True)
class Machine:
    dirs: ConfigDirs
    work: Path
    identity: Path
    registry: Path

    @property
    def ca(self) -> Path:
        """The embedded swtpm's local manufacturer CA (root's; the verifier trusts it here)."""
        return self.dirs.data / "tpm/ek-ca.pem"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return rkt(self.dirs, "attest", *args)

    def challenge(self, *anchor: str) -> subprocess.CompletedProcess[str]:
        out = self.work / "challenge.bin"
        return self.run(
            "challenge", str(self.identity), "--registry", str(self.registry), *anchor,
            "--out", str(out),
        )  # fmt: skip

    def activate(self, challenge: Path) -> Path:
        secret = self.work / "secret.bin"
        done = self.run("activate", str(challenge), "--out", str(secret))
        assert done.returncode == 0, done.stderr
        return secret

    def enroll(self, secret: Path) -> subprocess.CompletedProcess[str]:
        challenge = self.work / "challenge.bin"
        return self.run("enroll", str(challenge), str(secret), "--registry", str(self.registry))

    def verify(self) -> subprocess.CompletedProcess[str]:
        bundle = self.work / "bundle"
        done = self.run("quote", "--nonce", NONCE, "--out", str(bundle))
        assert done.returncode == 0, done.stderr
        return self.run("verify", str(bundle), "--registry", str(self.registry), "--nonce", NONCE)


@pytest.fixture
def machine(shared_dirs: ConfigDirs, tmp_path: Path) -> Iterator[Machine]:
    identity = tmp_path / "identity"
    done = rkt(shared_dirs, "attest", "identity", "--out", str(identity))
    assert done.returncode == 0, done.stderr
    assert "with its certificate from NV" in done.stdout
    yield Machine(shared_dirs, tmp_path, identity, tmp_path / "registry")
    stop_embedded(shared_dirs.data)


def test_ak_enrolled_against_the_local_ca_is_reported_ca_anchored(machine: Machine) -> None:
    assert (machine.identity / "ek.crt").is_file()
    made = machine.challenge("--ca", str(machine.ca))
    assert made.returncode == 0, made.stderr
    enrolled = machine.enroll(machine.activate(machine.work / "challenge.bin"))
    assert enrolled.returncode == 0, enrolled.stderr
    assert "CA-anchored" in enrolled.stdout
    verified = machine.verify()
    assert verified.returncode == 0, verified.stderr
    assert "AK enrolled: CA-anchored (EK certificate issued by CN=swtpm-localca)" in (
        verified.stdout
    )


def test_an_ak_with_no_activation_is_refused(machine: Machine) -> None:
    made = machine.challenge("--ca", str(machine.ca))
    assert made.returncode == 0, made.stderr
    refused = machine.verify()  # challenged, never activated: not enrolled
    assert refused.returncode == 254
    assert "'enrolled' failed" in refused.stderr and "no credential activation" in refused.stderr


def test_an_ek_certificate_from_an_unknown_ca_is_refused(machine: Machine) -> None:
    other = machine.work / "other-ca.pem"
    other.write_bytes(_self_signed_ca("some other TPM vendor"))
    refused = machine.challenge("--ca", str(other))
    assert refused.returncode == 254
    assert "'ek-cert' failed" in refused.stderr and "does not chain" in refused.stderr
    assert not (machine.work / "challenge.bin").exists()
    assert machine.verify().returncode == 254


def test_a_wrong_secret_is_refused_and_the_challenge_is_spent(machine: Machine) -> None:
    assert machine.challenge("--ca", str(machine.ca)).returncode == 0
    right = machine.activate(machine.work / "challenge.bin")
    wrong = machine.work / "wrong.bin"
    wrong.write_bytes(os.urandom(32))
    refused = machine.enroll(wrong)
    assert refused.returncode == 254 and "'activation' failed" in refused.stderr
    again = machine.enroll(right)  # one answer per challenge
    assert again.returncode == 254 and "no such challenge" in again.stderr
    assert machine.verify().returncode == 254


def test_tofu_enrolment_is_reported_as_tofu(machine: Machine) -> None:
    assert machine.challenge("--tofu").returncode == 0
    enrolled = machine.enroll(machine.activate(machine.work / "challenge.bin"))
    assert enrolled.returncode == 0, enrolled.stderr
    assert "TOFU" in enrolled.stdout
    verified = machine.verify()
    assert verified.returncode == 0, verified.stderr
    assert "AK enrolled: TOFU" in verified.stdout


def test_tpm2_makecredential_output_activates_in_trustd(machine: Machine) -> None:
    secret = os.urandom(32)
    (machine.work / "secret.in").write_bytes(secret)
    name = (machine.identity / "ak.name").read_text()
    made = subprocess.run(
        [
            "tpm2_makecredential", "-T", "none", "-u", str(machine.identity / "ek.pub"),
            "-s", str(machine.work / "secret.in"), "-n", name,
            "-o", str(machine.work / "tools.cred"),
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert machine.activate(machine.work / "tools.cred").read_bytes() == secret


def test_trustd_credential_activates_with_tpm2_activatecredential(machine: Machine) -> None:
    identity = Identity.load(machine.identity)
    _, name = check_ak(identity.ak_public)
    ek = storage_key(strip_tpm2b(identity.ek_public, "EK"))
    secret = os.urandom(32)
    cred = machine.work / "trustd.cred"
    cred.write_bytes(make_credential(ek, name, secret).to_file())
    tpm_dir = machine.dirs.data / "tpm"
    measurer = Measurer(machine.dirs.data)
    with measurer._session() as (tpm, _):
        ak, _ = tpm._create_ak()
        handle = tpm._ctx.tr_get_tpm_handle(ak)
    auth = load_or_create(tpm_dir).auth.hex()  # root's secret: the AK's auth value
    env = {**os.environ, "TPM2TOOLS_TCTI": tools_tcti(tpm_dir)}

    def tools(*argv: str) -> None:
        done = subprocess.run(
            argv, env=env, cwd=machine.work, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr

    try:
        tools("tpm2_createek", "-c", "ek.ctx", "-G", "rsa")
        tools("tpm2_startauthsession", "--policy-session", "-S", "session.ctx")
        tools("tpm2_policysecret", "-S", "session.ctx", "-c", "e")
        tools(
            "tpm2_activatecredential", "-c", hex(handle), "-p", f"hex:{auth}",
            "-C", "ek.ctx", "-P", "session:session.ctx", "-i", str(cred), "-o", "secret.out",
        )  # fmt: skip
    finally:
        subprocess.run(
            ["tpm2_flushcontext", "-t"], env=env, capture_output=True, check=False
        )  # every transient object: the AK, the EK
        subprocess.run(["tpm2_flushcontext", "-s"], env=env, capture_output=True, check=False)
    assert (machine.work / "secret.out").read_bytes() == secret


def _self_signed_ca(name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_an_ecc_p256_ek_activates_trustd_credential(machine: Machine) -> None:
    """ECDH + KDFe (Part 1 §C.6.1) against the TPM's own ECC P-256 EK (TCG EK profile)."""
    from tpm2_pytss.utils import create_ek_template  # type: ignore[import-untyped]  # noqa: PLC0415

    identity = Identity.load(machine.identity)
    _, name = check_ak(identity.ak_public)
    measurer = Measurer(machine.dirs.data)
    with measurer._session() as (tpm, _):
        _, template = create_ek_template("EK-ECC256", tpm._nv_reader())
        handle, public = tpm._create_ek(template)
        tpm._ctx.flush_context(handle)
        ek = storage_key(strip_tpm2b(bytes(public.marshal()), "ECC EK"))
        secret = os.urandom(32)
        cred = make_credential(ek, name, secret)
        assert tpm.activate("EK-ECC256", cred.id_object, cred.encrypted_secret) == secret

"""Boot appraisal on real firmware logs: a Windows shielded VM's complete quote and log
(go-attestation), the tpm2-tools logs with their expected PCRs, and the verifier policy."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path

import pytest

from tests.unit.attest._vectors import GO, TOOLS, go_bundle, go_vector, yaml_pcrs
from trustd.shared.attest import (
    HashAlg,
    QuoteError,
    VerifiedQuote,
    load_ak_tpm,
    parse_firmware_log,
    verify_quote,
)
from trustd.shared.attest.boot import (
    appraise_boot,
    boot_problems,
    golden_pcrs,
    secure_boot_state,
)
from trustd.shared.attest.firmware import FirmwareLog
from trustd.shared.attest.policy import BootPolicy, VerifierPolicy, hardware_problems, json_schema
from trustd.shared.codec import DecodeError

WINDOWS_RAW = base64.b64decode(go_vector()["Log"]["Raw"])


def windows() -> tuple[VerifiedQuote, FirmwareLog]:
    ak = load_ak_tpm(base64.b64decode(go_vector()["AK"]["Public"]))
    quote = verify_quote(go_bundle(), ak, b"", allow_sha1=True, min_nonce_bytes=0)
    return quote, parse_firmware_log(WINDOWS_RAW)


def test_windows_shielded_vm_boot_replays_to_the_quote_and_shows_secure_boot() -> None:
    quote, log = windows()
    appraisal = appraise_boot(quote, log)
    assert sorted(appraisal.pcrs[HashAlg.SHA1]) == list(range(8))
    assert appraisal.secure_boot == "enabled"
    reference = {str(i): v.hex() for i, v in appraisal.pcrs[HashAlg.SHA1].items()}
    assert boot_problems(appraisal, BootPolicy(bank="sha1", pcrs=reference)) == []


def test_windows_log_with_an_event_removed_is_refused() -> None:
    quote, log = windows()
    pcr0 = next(i for i, e in enumerate(log.events) if e.pcr == 0 and e.event_type != 3)
    shorter = dataclasses.replace(log, events=log.events[:pcr0] + log.events[pcr0 + 1 :])
    with pytest.raises(QuoteError) as err:
        appraise_boot(quote, shorter)
    assert err.value.check == "boot-replay"
    assert "PCR 0" in str(err.value)


def test_boot_pcr_that_differs_from_the_reference_is_refused() -> None:
    quote, log = windows()
    appraisal = appraise_boot(quote, log)
    reference = {str(i): v.hex() for i, v in appraisal.pcrs[HashAlg.SHA1].items()}
    reference["4"] = "00" * 20
    problems = boot_problems(appraisal, BootPolicy(bank="sha1", pcrs=reference))
    assert problems == [
        f"sha1 PCR 4 is {appraisal.pcrs[HashAlg.SHA1][4].hex()}, the reference says {'00' * 20}"
    ]


def test_reference_in_a_bank_the_quote_lacks_is_refused() -> None:
    quote, log = windows()
    appraisal = appraise_boot(quote, log)
    problems = boot_problems(appraisal, BootPolicy(bank="sha256", pcrs={"0": "00" * 32}))
    assert problems == ["the quote does not cover sha256 PCRs [0]"]


def test_secure_boot_state_the_policy_does_not_allow_is_refused() -> None:
    quote, log = windows()
    appraisal = appraise_boot(quote, log)
    assert boot_problems(appraisal, BootPolicy(secure_boot="disabled")) == [
        "Secure Boot is enabled in the firmware log, the policy requires disabled"
    ]


def test_golden_log_is_the_reference(tmp_path: Path) -> None:
    quote, log = windows()
    appraisal = appraise_boot(quote, log)
    golden = tmp_path / "golden.bin"
    golden.write_bytes(WINDOWS_RAW)
    assert boot_problems(appraisal, BootPolicy(bank="sha1", golden_log=str(golden))) == []
    other = tmp_path / "other.bin"
    other.write_bytes((GO / "option_rom_eventlog").read_bytes())
    problems = boot_problems(appraisal, BootPolicy(bank="sha1", golden_log=str(other)))
    assert problems  # another machine's boot
    assert all(f"the golden log {other} says" in p for p in problems)


@pytest.mark.parametrize(
    "name",
    [
        "event-arch-linux.bin",
        "event-gce-ubuntu-2104-log.bin",
        "event-sd-boot-fedora37.bin",
        "event-moklisttrusted.bin",
        "event-uefi-sha1-log.bin",
        "event.bin",
    ],
)
def test_tpm2_tools_golden_log_gives_the_expected_boot_pcrs(name: str, tmp_path: Path) -> None:
    expected = yaml_pcrs(TOOLS / f"{name}.yaml")
    log_path = TOOLS / name
    for alg, values in expected.items():
        want = {i: v for i, v in values.items() if i < 8}
        got = golden_pcrs(str(log_path), alg)
        assert {i: got[i] for i in want} == want


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("event-moklisttrusted.bin", "enabled"),
        ("event-gce-ubuntu-2104-log.bin", "disabled"),
        ("event-arch-linux.bin", "disabled"),  # the variable measured empty: absent
        ("event.bin", "unknown"),
    ],
)
def test_secure_boot_state_is_read_from_the_log(name: str, state: str) -> None:
    log = parse_firmware_log((TOOLS / name).read_bytes())
    assert secure_boot_state(log) == state


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "verifier.toml"
    path.write_text(text)
    return path


def test_empty_verifier_policy_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DecodeError, match="empty"):
        VerifierPolicy.load(write(tmp_path, "# nothing\n"))


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('require_seccomp = "yes"\n', "require_seccomp"),
        ("signers = 'abc'\n", "signers"),
        ("require_hardware = true\n", "require_hardware"),
        ('[boot]\npcrs = { "8" = "00" }\n', "boot.pcrs"),
        ('[boot]\npcrs = { "0" = "xyz" }\n', "boot.pcrs"),
        ('[boot]\nbank = "md5"\n', "boot.bank"),
        ("[boot]\nsecure_boot = true\n", "boot.secure_boot"),
        ("[boot]\n", "boot"),
    ],
)
def test_mistyped_verifier_policy_is_refused(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(DecodeError) as err:
        VerifierPolicy.load(write(tmp_path, text))
    assert where in str(err.value)


def test_full_verifier_policy_loads(tmp_path: Path) -> None:
    policy = VerifierPolicy.load(
        write(
            tmp_path,
            'require_hardware_tpm = true\n[boot]\nbank = "sha1"\nsecure_boot = "enabled"\n'
            f'pcrs = {{ "0" = "{"ab" * 20}" }}\n',
        )
    )
    assert policy.require_hardware_tpm
    assert policy.boot == BootPolicy(bank="sha1", pcrs={"0": "ab" * 20}, secure_boot="enabled")


def test_hardware_required_refuses_swtpm_and_an_unverified_claim() -> None:
    policy = VerifierPolicy(require_hardware_tpm=True)
    assert hardware_problems(policy, "software (swtpm)", "pinned") == [
        "the TPM is software (swtpm); the policy requires a hardware TPM"
    ]
    assert hardware_problems(policy, "hardware, unverified claim", "pinned") != []
    assert hardware_problems(policy, "hardware", "CA-anchored") == []
    assert hardware_problems(VerifierPolicy(), "software (swtpm)", "pinned") == []


def test_json_schema_refuses_unknown_keys_and_names_every_key() -> None:
    schema = json_schema()
    assert schema["additionalProperties"] is False
    assert schema["minProperties"] == 1
    keys = {f.name for f in dataclasses.fields(VerifierPolicy)}
    assert set(schema["properties"]) == keys
    boot = schema["$defs"]["BootPolicy"]
    assert boot["additionalProperties"] is False
    assert set(boot["properties"]) == {"bank", "pcrs", "golden_log", "secure_boot"}
    json.dumps(schema)

"""TCG binary firmware logs: replay equals tpm2_eventlog's, and bad logs fail cleanly."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.unit.attest._vectors import GO, TOOLS, TSS, yaml_pcrs
from trustd.shared.attest import (
    AttestFormatError,
    FirmwareLog,
    HashAlg,
    parse_firmware_log,
    replay,
)

TCG2 = ["arch-linux", "gce-ubuntu-2104-log", "sd-boot-fedora37", "moklisttrusted"]
ALSO_TCG2 = ["bootorder", "postcode", "uefiaction", "uefiservices", "uefivar"]
SHA1 = ["uefi-sha1-log"]


@pytest.mark.parametrize("name", TCG2 + ALSO_TCG2 + SHA1)
def test_tpm2_tools_logs_replay_to_the_expected_pcrs(name: str) -> None:
    path = TOOLS / f"event-{name}.bin"
    log = parse_firmware_log(path.read_bytes())
    assert log.format == ("sha1" if name in SHA1 else "tcg2")
    assert replay(log) == yaml_pcrs(path.with_name(path.name + ".yaml"))


def test_single_event_log_replays() -> None:
    assert replay(parse_firmware_log((TOOLS / "event.bin").read_bytes())) == yaml_pcrs(
        TOOLS / "event.bin.yaml"
    )


def test_spec_id_vendor_info_past_the_declared_size_is_refused() -> None:
    """tpm2-tools reads past eventDataSize here; trustd does not."""
    with pytest.raises(AttestFormatError, match="vendorInfo"):
        parse_firmware_log((TOOLS / "specid-vendordata.bin").read_bytes())


def _tss(name: str) -> bytes:
    return base64.b64decode((TSS / name).read_bytes())


@pytest.mark.parametrize(
    "name",
    [
        "binary_measurements_hcrtm.b64",
        "binary_measurements_nuc.b64",
        "binary_measurements_pc_client.b64",
        "event-uefiaction.b64",
        "event-uefiservices.b64",
        "event-uefivar.b64",
        "event.b64",
        "specid-vendordata.b64",
    ],
)
def test_tpm2_tss_firmware_logs_parse(name: str) -> None:
    _replays_whole_digests(parse_firmware_log(_tss(name)))


def test_hcrtm_log_starts_pcr0_at_locality_4() -> None:
    log = parse_firmware_log(_tss("binary_measurements_hcrtm.b64"))
    assert any(e.event_type == 0x80000010 for e in log.events)
    assert HashAlg.SHA256 in replay(log)


@pytest.mark.parametrize("path", sorted(TSS.glob("sml-ima-*.b64")), ids=lambda p: p.name)
def test_ima_logs_are_not_firmware_logs_and_fail_cleanly(path: Path) -> None:
    with pytest.raises(AttestFormatError):
        parse_firmware_log(base64.b64decode(path.read_bytes()))


@pytest.mark.parametrize("path", sorted(GO.glob("*_eventlog")), ids=lambda p: p.name)
def test_go_attestation_logs_parse(path: Path) -> None:
    _replays_whole_digests(parse_firmware_log(path.read_bytes()))


def _replays_whole_digests(log: FirmwareLog) -> None:
    """The log has events, and every PCR its replay gives is one digest of its bank's size."""
    assert log.events
    for alg, bank in replay(log).items():
        assert bank and all(0 <= pcr < 24 and len(v) == alg.size for pcr, v in bank.items())


def test_short_no_action_log_is_one_startup_locality_event() -> None:
    log = parse_firmware_log((GO / "short_no_action_eventlog").read_bytes())
    assert [e.event_type for e in log.events] == [3]
    assert replay(log) == {}


def test_truncated_logs_fail_cleanly_at_every_length() -> None:
    data = (TOOLS / "event-sd-boot-fedora37.bin").read_bytes()
    full = parse_firmware_log(data).events
    for end in range(len(data)):
        try:
            events = parse_firmware_log(data[:end]).events
        except AttestFormatError:
            continue
        # a cut that falls exactly between two events is a valid, shorter log
        assert events == full[: len(events)]


def test_huge_declared_event_size_does_not_allocate() -> None:
    header = (0).to_bytes(4, "little") + (8).to_bytes(4, "little") + bytes(20)
    with pytest.raises(AttestFormatError, match="4294967295 bytes"):
        parse_firmware_log(header + (0xFFFFFFFF).to_bytes(4, "little"))


def test_extending_event_in_a_pcr_that_does_not_exist_is_refused() -> None:
    event = (40).to_bytes(4, "little") + (8).to_bytes(4, "little") + bytes(24)
    with pytest.raises(AttestFormatError, match="pcrIndex"):
        parse_firmware_log(event)

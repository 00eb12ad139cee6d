"""Backend selection from configuration alone (no TPM needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trustd.privileged.measure import ENV_TCTI, Measurer, choose_backend, status
from trustd.privileged.measure.measure import (
    ALLOWED_PCRS,
    DEFAULT_PCR,
    EMBEDDED_PCR,
    RESETTABLE_PCRS,
    default_pcr,
)
from trustd.shared.errors import UserError

CHAR_DEVICE = Path("/dev/null")  # a character device standing in for /dev/tpmrm0
MISSING = Path("/nonexistent/tpmrm0")


@pytest.mark.parametrize(
    ("tcti", "env", "device", "kind", "expected_tcti", "reason"),
    [
        (
            "mssim:port=2421",
            {ENV_TCTI: "device:/dev/tpm0"},
            CHAR_DEVICE,
            "tcti",
            "mssim:port=2421",
            "configuration",
        ),
        (None, {ENV_TCTI: "device:/dev/tpm0"}, CHAR_DEVICE, "tcti", "device:/dev/tpm0", ENV_TCTI),
        (None, {}, CHAR_DEVICE, "device", f"device:{CHAR_DEVICE}", "kernel resource manager"),
        (None, {}, MISSING, "swtpm", None, "embedded swtpm"),
        (None, {"OTHER": "x"}, Path("/"), "swtpm", None, "embedded swtpm"),  # not a char device
    ],
)
def test_precedence(
    tcti: str | None,
    env: dict[str, str],
    device: Path,
    kind: str,
    expected_tcti: str | None,
    reason: str,
) -> None:
    choice = choose_backend(tcti=tcti, env=env, device=device)
    assert (choice.kind, choice.tcti) == (kind, expected_tcti)
    assert reason in choice.reason


@pytest.mark.parametrize("bad", ["", " ", "swtpm:host=a b", "x\n", "a;rm -rf /", ":conf"])
def test_malformed_tcti_is_refused_never_skipped(bad: str) -> None:
    with pytest.raises(UserError, match="not a TCTI string"):
        choose_backend(tcti=bad, env={}, device=MISSING)
    with pytest.raises(UserError, match=ENV_TCTI):
        choose_backend(env={ENV_TCTI: bad}, device=MISSING)


def test_status_of_an_unstarted_embedded_swtpm(tmp_path: Path) -> None:
    st = status(tmp_path, env={}, device=MISSING)
    assert st.kind == "swtpm" and not st.running and st.swtpm is None
    assert "backend: swtpm" in st.describe()
    assert not (tmp_path / "tpm").exists()  # status changes nothing


def test_status_of_a_configured_tcti(tmp_path: Path) -> None:
    st = Measurer(tmp_path, tcti="device:/dev/tpmrm0").status()
    assert st.kind == "tcti" and st.tcti == "device:/dev/tpmrm0"


def test_default_pcr_is_allowed_and_not_systemds() -> None:
    assert DEFAULT_PCR == 23 and DEFAULT_PCR in ALLOWED_PCRS
    assert ALLOWED_PCRS.isdisjoint({*range(8), 10, 11, 12, 13, 15, *range(17, 23)})


def test_the_embedded_swtpm_defaults_to_a_pcr_that_cannot_be_reset(tmp_path: Path) -> None:
    """No boot chain measures into the embedded swtpm: a free, non-resettable PCR (ADR 0007)."""
    assert EMBEDDED_PCR in ALLOWED_PCRS - RESETTABLE_PCRS and EMBEDDED_PCR < 16
    assert Measurer(tmp_path, env={}, device=MISSING).pcr == EMBEDDED_PCR == default_pcr("swtpm")
    assert Measurer(tmp_path, tcti="device:/dev/tpmrm0").pcr == DEFAULT_PCR == default_pcr("tcti")
    assert Measurer(tmp_path, pcr=16, env={}, device=MISSING).pcr == 16  # measure.json wins


@pytest.mark.parametrize("pcr", [0, 7, 10, 11, 15, 17, 22, 24, -1, True])
def test_claimed_pcrs_are_refused(tmp_path: Path, pcr: int) -> None:
    with pytest.raises(UserError, match="may not be used"):
        Measurer(tmp_path, pcr=pcr, env={}, device=MISSING)


def test_unknown_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="best-effort"):
        Measurer(tmp_path, mode="off", env={}, device=MISSING)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "content",
    [
        {},
        {"kind": "image"},
        {"kind": "image", "data": {}},
        {"kind": "image", "data": {"a": ""}},
        {"kind": "image", "data": {"a": None}},
        {"kind": "image", "data": {"a": [""]}},
        {"kind": "image", "data": {"a": {"b": None}}},
        {"kind": "image", "data": {"": 1}},
        {"kind": "image", "data": {"a": 1.5}},
        {"kind": "Image!", "data": {"a": 1}},
        {"kind": "image", "data": {"a": 1}, "extra": 1},
        {"kind": "image", "data": {"a": 2**60}},
    ],
)
def test_empty_or_ambiguous_event_fields_are_refused(
    tmp_path: Path, content: dict[str, object]
) -> None:
    m = Measurer(tmp_path, env={}, device=MISSING)
    with pytest.raises(UserError, match="event content"):
        m.extend(23, content)
    assert not (tmp_path / "tpm").exists()  # refused before any TPM work


def test_status_of_a_device_says_who_else_can_open_it(tmp_path: Path) -> None:
    st = status(tmp_path, env={}, device=CHAR_DEVICE)
    assert st.kind == "device" and st.access is not None
    assert "can open it" in st.access and "ak.secret" in st.access
    assert "access:" in st.describe()

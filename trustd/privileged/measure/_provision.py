"""Manufacture the embedded swtpm once: an EK and its certificate, as a TPM vendor would.

Before the first start of a fresh ``swtpm-state/``, ``swtpm_setup --create-ek-cert
--create-platform-cert --lock-nvram`` (swtpm's own tool) creates the EK (RSA 2048 and ECC),
has ``swtpm_localca`` issue the EK certificate from a local "manufacturer" CA and writes it
into NV (0x01c00002 for RSA), as a hardware TPM's vendor does. The CA's keys live in
``<data-dir>/tpm/localca/`` (0700, root's); its certificate is copied to
``<data-dir>/tpm/ek-ca.pem`` and the issuing intermediate to ``ek-intermediates.pem``, which
``rkt attest identity`` hands out: a verifier that trusts this machine's root may configure
``ek-ca.pem`` as its CA (the demo does).

A state that already exists is never re-manufactured (that would replace the owner seed and
so the AK): it keeps running without an EK certificate, and enrolment is TOFU only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from trustd.privileged.measure._statedir import ensure_private_dir
from trustd.privileged.measure.errors import MeasurementError
from trustd.shared._fsutil import atomic_write

STATE: Final = "swtpm-state"  # as in _swtpmd
PERMALL: Final = "tpm2-00.permall"
LOCALCA: Final = "localca"
CA_CERT: Final = "ek-ca.pem"
INTERMEDIATES: Final = "ek-intermediates.pem"
SETUP_LOG: Final = "swtpm_setup.log"
_TIMEOUT: Final = 120.0


def fresh(tpm_dir: Path) -> bool:
    """The swtpm has never run here: nothing in its state directory yet."""
    return not (tpm_dir / STATE / PERMALL).exists()


def _configs(ca_dir: Path) -> Path:
    localca = ca_dir / "swtpm-localca.conf"
    options = ca_dir / "swtpm-localca.options"
    setup = ca_dir / "swtpm_setup.conf"
    atomic_write(
        localca,
        (
            f"statedir = {ca_dir}\n"
            f"signingkey = {ca_dir / 'signkey.pem'}\n"
            f"issuercert = {ca_dir / 'issuercert.pem'}\n"
            f"certserial = {ca_dir / 'certserial'}\n"
        ).encode(),
        mode=0o600,
    )
    atomic_write(
        options,
        b"--platform-manufacturer trustd\n--platform-version 2.1\n--platform-model swtpm\n",
        mode=0o600,
    )
    atomic_write(
        setup,
        (
            "create_certs_tool = /usr/bin/swtpm_localca\n"
            f"create_certs_tool_config = {localca}\n"
            f"create_certs_tool_options = {options}\n"
        ).encode(),
        mode=0o600,
    )
    return setup


def provision(tpm_dir: Path) -> None:
    """Manufacture a fresh swtpm state (the caller holds the lock and no swtpm runs)."""
    import shutil  # noqa: PLC0415 - only on a first start
    import subprocess  # noqa: PLC0415

    binary = shutil.which("swtpm_setup", path="/usr/bin:/usr/local/bin:/bin")
    if binary is None:
        raise MeasurementError(
            "swtpm_setup is not installed: the embedded swtpm cannot get an EK certificate",
            backend="swtpm",
            hint="install swtpm-tools (apt-get install swtpm-tools)",
        )
    ca_dir = ensure_private_dir(tpm_dir / LOCALCA)
    state = ensure_private_dir(tpm_dir / STATE)
    argv = [binary, "--tpm2", "--tpmstate", str(state), "--config", str(_configs(ca_dir))]
    # "--pcr-banks -": keep every bank the TPM allocates (ADR 0007 extends them all)
    argv += ["--create-ek-cert", "--create-platform-cert", "--lock-nvram", "--pcr-banks", "-"]
    argv += ["--not-overwrite", "--logfile", str(tpm_dir / SETUP_LOG)]
    try:
        done = subprocess.run(  # noqa: S603
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_TIMEOUT,
            cwd=str(tpm_dir),
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MeasurementError(
            f"cannot manufacture the embedded swtpm: {exc}",
            backend="swtpm",
            hint=f"see {tpm_dir / SETUP_LOG}",
        ) from exc
    if done.returncode != 0 or fresh(tpm_dir):
        raise MeasurementError(
            f"swtpm_setup failed (exit {done.returncode}): {done.stderr.decode(errors='replace')}",
            backend="swtpm",
            hint=f"see {tpm_dir / SETUP_LOG}; then rm -r {state} and try again",
        )
    root = ca_dir / "swtpm-localca-rootca-cert.pem"
    atomic_write(tpm_dir / CA_CERT, root.read_bytes(), mode=0o644)
    atomic_write(tpm_dir / INTERMEDIATES, (ca_dir / "issuercert.pem").read_bytes(), mode=0o644)

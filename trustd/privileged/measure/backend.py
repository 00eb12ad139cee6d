"""Which TPM trustd measures into, and why (``rkt attest status``).

Order: a TCTI string given by the caller (from the config file or a flag), then
``$TRUSTD_TCTI``, then the kernel resource manager ``/dev/tpmrm0``, else the embedded swtpm
that trustd starts under ``<data-dir>/tpm/`` and reaches over a root-only UNIX socket there. The
embedded swtpm is a software TPM: it proves what trustd measured to anyone who trusts this
machine's root, not what the hardware booted.
"""

from __future__ import annotations

import grp
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal

from trustd.privileged._tpmsocket import SOCKET
from trustd.privileged.measure import _swtpm
from trustd.privileged.measure._statedir import ensure_private_dir, locked, tpm_dir
from trustd.privileged.measure._swtpm import SwtpmState
from trustd.shared._dataclass import frozen
from trustd.shared.errors import UserError

ENV_TCTI: Final = "TRUSTD_TCTI"
DEVICE: Final = Path("/dev/tpmrm0")
_TCTI_RE: Final = re.compile(r"[A-Za-z0-9_.\-]+(:[\x21-\x7e]*)?")

Kind = Literal["tcti", "device", "swtpm"]


@frozen
class BackendChoice:
    """The backend selected by configuration alone (nothing started yet)."""

    kind: Kind
    reason: str
    tcti: str | None  # None for the embedded swtpm until it runs


@frozen
class Target:
    """A backend ready to use: the TCTI to open and, for the swtpm, what happened to it.

    For the embedded swtpm ``tcti`` only describes the channel; :func:`_esys.connect` opens
    ``socket_dir``'s UNIX socket with trustd's own TCTI.
    """

    kind: Kind
    reason: str
    tcti: str
    swtpm: SwtpmState | None = None
    started: str | None = None  # "started", "restarted: …" or None when an existing one answered
    socket_dir: Path | None = None


@frozen
class BackendStatus:
    kind: Kind
    reason: str
    tcti: str | None
    swtpm: SwtpmState | None
    running: bool
    access: str | None = None  # who else can open the device

    def describe(self) -> str:
        lines = [f"backend: {self.kind}", f"reason: {self.reason}"]
        if self.tcti:
            lines.append(f"tcti: {self.tcti}")
        if self.access:
            lines.append(f"access: {self.access}")
        if self.swtpm is not None:
            state = "running" if self.running else "not running (started on next use)"
            lines.append(
                f"swtpm: pid {self.swtpm.swtpm_pid} (supervisor {self.swtpm.pid}), {state}, "
                f"started {self.swtpm.starts}x"
            )
        return "\n".join(lines)


def _check_tcti(value: str, source: str) -> str:
    if not _TCTI_RE.fullmatch(value):
        raise UserError(
            f"{source}: {value!r} is not a TCTI string",
            hint='expected NAME[:CONF], e.g. "device:/dev/tpmrm0" or '
            '"mssim:host=localhost,port=2321"',
        )
    return value


def choose_backend(
    *, tcti: str | None = None, env: Mapping[str, str] | None = None, device: Path = DEVICE
) -> BackendChoice:
    """Pick the backend from configuration; a malformed TCTI is refused, never skipped."""
    environ = os.environ if env is None else env
    if tcti is not None:
        value = _check_tcti(tcti, "tcti setting")
        return BackendChoice("tcti", "TCTI from the configuration (tcti=)", value)
    if ENV_TCTI in environ:
        value = _check_tcti(environ[ENV_TCTI], f"${ENV_TCTI}")
        return BackendChoice("tcti", f"TCTI from ${ENV_TCTI}", value)
    try:
        is_device = stat.S_ISCHR(device.stat().st_mode)
    except OSError:
        is_device = False
    if is_device:
        return BackendChoice(
            "device", f"{device} is present (kernel resource manager)", f"device:{device}"
        )
    reason = f"no TCTI configured and no {device}: embedded swtpm"
    return BackendChoice("swtpm", reason, None)


def embedded_tcti(directory: Path) -> str:
    """How ``rkt attest status`` names the embedded swtpm's channel."""
    return f"unix:{directory / SOCKET} (root only)"


def _embedded_locked(directory: Path, reason: str) -> Target:
    legacy_starts = _swtpm.retire_legacy(directory)
    previous = _swtpm.load_state(directory)
    if previous is None and legacy_starts:
        state = _swtpm.start(directory, None, starts=legacy_starts + 1)
        why = "restarted: an older trustd's TCP swtpm was stopped"
        return Target("swtpm", reason, embedded_tcti(directory), state, why, directory)
    if previous is not None and _swtpm.is_alive(directory):
        return Target("swtpm", reason, embedded_tcti(directory), previous, None, directory)
    state = _swtpm.start(directory, previous)
    why = "started" if previous is None else f"restarted: pid {previous.pid} was not answering"
    return Target("swtpm", reason, embedded_tcti(directory), state, why, directory)


def resolve_locked(choice: BackendChoice, directory: Path) -> Target:
    """Make ``choice`` usable; the caller holds ``directory``'s lock."""
    if choice.tcti is not None:
        return Target(choice.kind, choice.reason, choice.tcti)
    return _embedded_locked(directory, choice.reason)


def open_backend(
    data_dir: Path,
    *,
    tcti: str | None = None,
    env: Mapping[str, str] | None = None,
    device: Path = DEVICE,
) -> Target:
    """Choose the backend and, for the embedded swtpm, reuse or (re)start it."""
    choice = choose_backend(tcti=tcti, env=env, device=device)
    directory = ensure_private_dir(tpm_dir(data_dir))
    with locked(directory):
        return resolve_locked(choice, directory)


def status(
    data_dir: Path,
    *,
    tcti: str | None = None,
    env: Mapping[str, str] | None = None,
    device: Path = DEVICE,
) -> BackendStatus:
    """Which backend is in use and why; starts nothing, changes nothing."""
    return status_of(choose_backend(tcti=tcti, env=env, device=device), data_dir)


def device_access(device: Path) -> str:
    """Who besides root can open ``device``: they reach the TPM, not trustd's AK (ADR 0007)."""
    try:
        st = device.stat()
    except OSError as exc:
        return f"{device}: {exc.strerror}"
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    others = []
    if st.st_mode & 0o060:
        others.append(f"group {group}")
    if st.st_mode & 0o006:
        others.append("every user")
    who = " and ".join(others) if others else "root alone"
    return (
        f"{device} mode {stat.S_IMODE(st.st_mode):04o}: {who} can open it; "
        "signing with trustd's AK needs ak.secret (root's)"
    )


def status_of(choice: BackendChoice, data_dir: Path) -> BackendStatus:
    if choice.kind != "swtpm":
        access = None
        if choice.kind == "device" and choice.tcti is not None:
            access = device_access(Path(choice.tcti.removeprefix("device:")))
        return BackendStatus(choice.kind, choice.reason, choice.tcti, None, True, access)
    directory = tpm_dir(data_dir)
    if directory.is_dir() and _swtpm.legacy_state(directory) is not None:
        reason = f"{choice.reason}; an older trustd's TCP swtpm is recorded (stopped on next use)"
        return BackendStatus("swtpm", reason, None, None, running=False)
    state = _swtpm.load_state(directory) if directory.is_dir() else None
    running = state is not None and _swtpm.is_alive(directory)
    tcti_str = embedded_tcti(directory) if running else None
    return BackendStatus("swtpm", choice.reason, tcti_str, state, running)


def stop_embedded(data_dir: Path) -> bool:
    """Stop the embedded swtpm of ``data_dir`` if it runs (``rkt attest stop-tpm``, tests).

    Its PCRs are lost: the next use starts it again and opens a new event-log epoch.
    """
    directory = tpm_dir(data_dir)
    if not directory.is_dir():
        return False
    with locked(directory):
        return _swtpm.stop(directory)

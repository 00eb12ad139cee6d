"""The four TPM 2.0 commands a pod start sends, marshalled here (issue #14: start-up).

A pod start asks the TPM for its PCR banks (``TPM2_GetCapability``), its boot epoch
(``TPM2_ReadClock``), PCR values (``TPM2_PCR_Read``) and extends (``TPM2_PCR_Extend``, with the
empty password session, as ESAPI sends it for a PCR without auth). Loading tpm2-pytss and the
``cryptography`` modules it pulls in took ~40 % of the root program's imports, for byte
strings of a few dozen bytes; so the embedded swtpm's socket and the kernel's resource manager
(``/dev/tpmrm0``) get these commands from :class:`RawTpm`, which has the same methods (and
errors) as :class:`~trustd.privileged.measure._esys.Tpm` for them. Every other operation
(keys, quotes, credentials) and any other TCTI still go through ESAPI. Responses are parsed
strictly: tag, size, response code, and every length against what is left.

Formats: TCG TPM 2.0 Library, Part 3 (commands) and Part 2 (structures), big-endian.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from trustd.privileged._tpmsocket import MAX_RESPONSE, connect_socket, read_message
from trustd.privileged.measure.errors import MeasurementError, tpm_failed
from trustd.shared._dataclass import frozen
from trustd.shared.errors import LocalStateError

ST_NO_SESSIONS: Final = 0x8001
ST_SESSIONS: Final = 0x8002
CC_GET_CAPABILITY: Final = 0x17A
CC_PCR_READ: Final = 0x17E
CC_READ_CLOCK: Final = 0x181
CC_PCR_EXTEND: Final = 0x182
CAP_PCRS: Final = 5
RS_PW: Final = 0x40000009
# TPM_ALG_ID of the banks trustd uses (Part 2, table 9), and their digest sizes.
ALG_IDS: Final = {"sha1": 0x0004, "sha256": 0x000B, "sha384": 0x000C, "sha512": 0x000D}
_SIZES: Final = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}
_NAMES: Final = {v: k for k, v in ALG_IDS.items()}
_PW_SESSION: Final = struct.pack(">IHBH", RS_PW, 0, 0, 0)  # handle, nonce, attributes, hmac


@frozen
class Clock:
    """The TPM's boot epoch: resetCount grows on every TPM Reset (power cycle, swtpm start).
    (:mod:`._esys` returns this class too.)"""

    reset_count: int
    restart_count: int


class _Reader:
    """A response body, read front to back; any overrun is a :class:`ValueError`."""

    def __init__(self, data: bytes) -> None:
        self._data, self._at = data, 0

    def take(self, size: int) -> bytes:
        if size < 0 or self._at + size > len(self._data):
            raise ValueError("the TPM's response is shorter than its fields")
        out = self._data[self._at : self._at + size]
        self._at += size
        return out

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def selection(self) -> list[tuple[int, bytes]]:
        count = self.uint(4)
        if count > 16:
            raise ValueError(f"a PCR selection of {count} banks")
        return [(self.uint(2), self.take(self.uint(1))) for _ in range(count)]


def _command(tag: int, code: int, body: bytes) -> bytes:
    return struct.pack(">HII", tag, 10 + len(body), code) + body


def _pcr_selection(banks: tuple[str, ...], pcr: int) -> bytes:
    bits = bytearray(3)
    bits[pcr // 8] |= 1 << (pcr % 8)
    return struct.pack(">I", len(banks)) + b"".join(
        struct.pack(">HB", ALG_IDS[b], 3) + bytes(bits) for b in banks
    )


class _Channel:
    """One connection: the embedded swtpm's socket, or a TPM character device."""

    def __init__(self, socket_dir: Path | None, device: Path | None) -> None:
        self._sock: socket.socket | None = None
        self._fd: int | None = None
        if socket_dir is not None:
            self._sock = connect_socket(socket_dir)
        elif device is not None:
            self._fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
        else:
            raise ValueError("no channel")

    def transact(self, command: bytes) -> bytes:
        if self._sock is not None:
            self._sock.sendall(command)
            return read_message(self._sock)
        if self._fd is None:
            raise ConnectionError("the channel is closed")
        if os.write(self._fd, command) != len(command):
            raise ConnectionError("short write to the TPM device")
        return os.read(self._fd, MAX_RESPONSE)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        if self._fd is not None:
            os.close(self._fd)
        self._sock = self._fd = None


class RawTpm:
    """The pod-start subset of :class:`~trustd.privileged.measure._esys.Tpm`."""

    def __init__(self, channel: _Channel, backend: str) -> None:
        self._channel = channel
        self.backend = backend

    def _call(self, tag: int, code: int, body: bytes) -> _Reader:
        response = self._channel.transact(_command(tag, code, body))
        if len(response) < 10:
            raise ValueError(f"a TPM response of {len(response)} bytes")
        rtag, size, rc = struct.unpack(">HII", response[:10])
        if size != len(response) or rtag not in (ST_NO_SESSIONS, ST_SESSIONS):
            raise ValueError(f"a malformed TPM response (tag {rtag:#x}, size {size})")
        if rc != 0:
            raise MeasurementError(
                f"TPM command {code:#x} failed with response code {rc:#x}", backend=self.backend
            )
        return _Reader(response[10:])

    def banks(self, pcr: int) -> tuple[str, ...]:
        """Hash banks allocated for ``pcr``, by name, in TPM order."""
        reader = self._call(ST_NO_SESSIONS, CC_GET_CAPABILITY, struct.pack(">III", CAP_PCRS, 0, 1))
        reader.take(1)  # moreData: one call returns every bank (TPML_PCR_SELECTION)
        if reader.uint(4) != CAP_PCRS:
            raise ValueError("the TPM answered another capability")
        out = []
        for alg, bits in reader.selection():
            name = _NAMES.get(alg)
            if name and pcr // 8 < len(bits) and bits[pcr // 8] >> pcr % 8 & 1:
                out.append(name)
        return tuple(out)

    def clock(self) -> Clock:
        reader = self._call(ST_NO_SESSIONS, CC_READ_CLOCK, b"")
        reader.take(8 + 8)  # time, clockInfo.clock
        return Clock(reset_count=reader.uint(4), restart_count=reader.uint(4))

    def extend(self, pcr: int, digests: dict[str, bytes]) -> None:
        values = b"".join(struct.pack(">H", ALG_IDS[alg]) + d for alg, d in digests.items())
        for alg, d in digests.items():
            if len(d) != _SIZES[alg]:
                raise ValueError(f"a {alg} digest of {len(d)} bytes")
        body = (
            struct.pack(">II", pcr, len(_PW_SESSION))
            + _PW_SESSION
            + struct.pack(">I", len(digests))
            + values
        )
        self._call(ST_SESSIONS, CC_PCR_EXTEND, body)

    def pcr_values(self, pcr: int, banks: tuple[str, ...]) -> dict[str, bytes]:
        """``pcr`` in each of ``banks`` (a TPM returns at most 8 digests per read)."""
        out: dict[str, bytes] = {}
        remaining = list(banks)
        while remaining:
            reader = self._call(ST_NO_SESSIONS, CC_PCR_READ, _pcr_selection(tuple(remaining), pcr))
            reader.take(4)  # pcrUpdateCounter
            got = [
                _NAMES.get(alg)
                for alg, bits in reader.selection()
                if pcr // 8 < len(bits) and bits[pcr // 8] >> pcr % 8 & 1
            ]
            count = reader.uint(4)
            if not got or count != len(got):
                raise MeasurementError("the TPM returned no PCR values", backend=self.backend)
            for name in got:
                value = reader.take(reader.uint(2))
                if name is None or name not in remaining or len(value) != _SIZES[name]:
                    raise ValueError(f"the TPM returned an unasked PCR value ({name})")
                out[name] = value
                remaining.remove(name)
        return {bank: out[bank] for bank in banks}


@contextlib.contextmanager
def connect(
    tcti: str, backend: str, *, socket_dir: Path | None, device: Path | None
) -> Iterator[RawTpm]:
    """As :func:`~trustd.privileged.measure._esys.connect`, for :class:`RawTpm`."""
    try:
        channel = _Channel(socket_dir, device)
    except (OSError, ValueError, LocalStateError) as exc:
        raise tpm_failed(tcti, backend, exc, opening=True) from exc
    try:
        yield RawTpm(channel, backend)
    except (OSError, ValueError) as exc:
        raise tpm_failed(tcti, backend, exc, opening=False) from exc
    finally:
        channel.close()


def raw_channel(kind: str, tcti: str, socket_dir: Path | None) -> tuple[Path | None, Path | None]:
    """(socket dir, device) when :class:`RawTpm` can reach this target, else (None, None)."""
    if kind == "swtpm" and socket_dir is not None:
        return socket_dir, None
    if kind == "device" and tcti.startswith("device:/"):
        return None, Path(tcti.removeprefix("device:"))
    return None, None

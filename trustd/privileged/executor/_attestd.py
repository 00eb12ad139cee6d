"""``rkt attest serve``: root quotes, an unprivileged HTTPS server talks to the network.

Root (this module, the only part that reaches the TPM) binds the listening socket, reads the
TLS certificate and key, and forks a child that drops to ``rkt-attest`` exactly as the
metadata service drops to ``rkt-mds`` (:func:`._mds.drop_to`: no capability in any set,
no_new_privs, no supplementary group, killed when root dies) and execs
``python -I -m trustd.unprivileged.attest``. The root program never imports that code, nor
ssl or http (ADR 0010).

Between them, two pipes carry one JSON document a line. The server writes a challenge,
``{"nonce": "<hex>", "pcrs": [0, ..., 7]}`` (at most :data:`MAX_CHALLENGE` bytes, decoded
strictly); root answers with the quote, the pod event log and, with a hardware TPM, the
host's firmware and IMA logs (root-only files under /sys/kernel/security), or with
``{"error": ..., "status": 400|429}``. Root refuses a nonce it has answered before (among
the last :data:`NONCES_KEPT`) and more than ``quotes_per_minute`` quotes in any minute. Root
exits when the server does (end of file on the challenge pipe), and the server when root
does (parent-death signal).
"""

from __future__ import annotations

import base64
import collections
import fcntl
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from trustd.privileged.executor import _linux as lx
from trustd.privileged.executor._mds import drop_to, service_ids
from trustd.shared._dataclass import frozen
from trustd.shared.codec import DecodeError, decode_json
from trustd.shared.errors import UserError
from trustd.shared.request import AttestServe

ATTEST_USER = "rkt-attest"
ATTEST_MODULE = "trustd.unprivileged.attest"  # exec'ed by name: the root program never imports it
CONFIG_FD, LISTEN_FD, CHALLENGE_FD, ANSWER_FD = 3, 4, 5, 6
MAX_CHALLENGE = 4096
MAX_TLS_FILE = 1 << 20
NONCES_KEPT = 4096
FIRMWARE_LOG = Path("/sys/kernel/security/tpm0/binary_bios_measurements")
IMA_LOG = Path("/sys/kernel/security/ima/ascii_runtime_measurements")
MAX_HOST_LOG = 32 << 20


@frozen
class Challenge:
    nonce: str
    pcrs: tuple[int, ...]


def attest_ids() -> tuple[int, int]:
    return service_ids(
        ATTEST_USER,
        "the attester's",
        "create it: bash scripts/setup-groups.sh (or install packaging/sysusers.d)",
    )


def _read_small(path: str | None, what: str) -> str | None:
    if path is None:
        return None
    try:
        with Path(path).open("rb") as fh:
            data = fh.read(MAX_TLS_FILE + 1)
    except OSError as exc:
        raise UserError(f"cannot read the {what} {path!r}: {exc.strerror}") from None
    if len(data) > MAX_TLS_FILE:
        raise UserError(f"the {what} {path!r} is larger than {MAX_TLS_FILE} bytes")
    return data.decode("ascii", "replace")


def _host_log(path: Path) -> bytes | None:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_HOST_LOG + 1)
    except OSError:
        return None
    return data if len(data) <= MAX_HOST_LOG else None


def _exec_server(fds: tuple[int, int, int, int], uid: int, gid: int) -> None:
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in fds]
    for target, fd in zip((CONFIG_FD, LISTEN_FD, CHALLENGE_FD, ANSWER_FD), high, strict=True):
        os.dup2(fd, target)  # dup2: inheritable
    lx.close_from(ANSWER_FD + 1)
    os.chdir("/")
    drop_to(uid, gid)
    argv = [
        sys.executable,
        "-I",
        "-m",
        ATTEST_MODULE,
        f"--config-fd={CONFIG_FD}",
        f"--listen-fd={LISTEN_FD}",
        f"--challenge-fd={CHALLENGE_FD}",
        f"--answer-fd={ANSWER_FD}",
    ]
    os.execve(sys.executable, argv, {"PATH": "/usr/bin:/bin"})  # noqa: S606 - no shell


class Quoter:
    """Root's side of the pipe: one bounded, strictly decoded challenge -> one answer."""

    def __init__(self, measurer: Any, quotes_per_minute: int) -> None:
        self.measurer = measurer
        self.per_minute = quotes_per_minute
        self.recent: collections.deque[float] = collections.deque()  # quote times, last minute
        self.seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        status = measurer.status()
        self.backend = {"swtpm": "software (swtpm)", "device": "hardware (TPM device)"}.get(
            status.kind, f"unknown ({status.kind})"
        )
        self.hardware = status.kind == "device"  # a TCTI may be anything, also an swtpm

    def answer(self, line: bytes) -> dict[str, Any]:
        if len(line) > MAX_CHALLENGE:
            return {"status": 400, "error": f"the challenge is larger than {MAX_CHALLENGE} bytes"}
        try:
            challenge = decode_json(line, Challenge, "the challenge")
            nonce = bytes.fromhex(challenge.nonce)
        except (DecodeError, ValueError) as exc:
            return {"status": 400, "error": str(exc)}
        if challenge.nonce.lower() in self.seen:
            return {"status": 400, "error": "this nonce was answered before: send a fresh one"}
        now = time.monotonic()
        while self.recent and now - self.recent[0] >= 60.0:
            self.recent.popleft()
        if len(self.recent) >= self.per_minute:
            return {"status": 429, "error": f"more than {self.per_minute} quotes a minute"}
        self.recent.append(now)
        pcrs = sorted({*challenge.pcrs, self.measurer.pcr})
        try:
            with tempfile.TemporaryDirectory(prefix="attest-") as out:
                bundle = self.measurer.quote(nonce, pcrs, Path(out))
                log = (Path(out) / "eventlog.json").read_text("utf-8")
        except UserError as exc:
            return {"status": 400, "error": str(exc)}
        self.seen[challenge.nonce.lower()] = None
        while len(self.seen) > NONCES_KEPT:
            self.seen.popitem(last=False)
        b64 = base64.b64encode
        firmware = _host_log(FIRMWARE_LOG) if self.hardware else None
        ima = _host_log(IMA_LOG) if self.hardware else None
        return {
            "status": 200,
            "quote": "r"
            + ":".join(
                b64(part).decode() for part in (bundle.attest, bundle.signature, bundle.pcr_file)
            ),
            "hash_alg": "sha256",
            "pubkey": bundle.ak_pem.decode("ascii"),
            "trustd_event_log": log,
            "mb_measurement_list": b64(firmware).decode() if firmware is not None else None,
            "ima_measurement_list": ima.decode("utf-8", "replace") if ima is not None else None,
            "backend": self.backend,
            "measurement_pcr": self.measurer.pcr,
        }


def serve(measurer: Any, request: AttestServe) -> int:
    """Bind, start the unprivileged server, then answer its challenges until it exits."""
    uid, gid = attest_ids()
    config = {
        "cert": _read_small(request.cert, "certificate"),
        "key": _read_small(request.key, "private key"),
        "client_ca": _read_small(request.client_ca, "client CA bundle"),
    }
    quoter = Quoter(measurer, request.quotes_per_minute)
    family = socket.AF_INET6 if ":" in request.host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((request.host, request.port))
    listener.listen(64)
    port = listener.getsockname()[1]
    config_r, config_w = os.pipe()
    challenge_r, challenge_w = os.pipe()
    answer_r, answer_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - measured by the integration tests
        try:
            for fd in (config_w, challenge_r, answer_w):
                os.close(fd)
            _exec_server((config_r, listener.fileno(), challenge_w, answer_r), uid, gid)
        except BaseException as exc:  # noqa: BLE001 - report, never return into root's loop
            print(f"attest serve: the HTTPS server: {exc}", file=sys.stderr)
        os._exit(127)
    listener.close()
    for fd in (config_r, challenge_w, answer_r):
        os.close(fd)
    with os.fdopen(config_w, "wb") as pipe:
        pipe.write(json.dumps(config).encode())
    print(
        f"attester listening on https://{request.host}:{port} ({quoter.backend}; "
        f"mutual TLS {'on' if request.client_ca else 'off'}; server pid {pid})",
        flush=True,
    )
    with os.fdopen(challenge_r, "rb") as challenges, os.fdopen(answer_w, "wb") as answers:
        while line := challenges.readline(MAX_CHALLENGE + 1):
            if not line.endswith(b"\n"):  # over-long: drain the rest of the line
                while (more := challenges.readline(MAX_CHALLENGE + 1)) and not more.endswith(b"\n"):
                    pass
                reply = {"status": 400, "error": f"challenge larger than {MAX_CHALLENGE} bytes"}
            else:
                reply = quoter.answer(line.rstrip(b"\n"))
            answers.write(json.dumps(reply).encode() + b"\n")
            answers.flush()
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    print(f"attester stopped (the HTTPS server exited with {code})", flush=True)
    return 0 if code in (0, -15) else 1

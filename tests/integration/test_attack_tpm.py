"""Only root can use the TPM (issue #11): the embedded swtpm's channel, state, lifecycle and AK.

The attacker is the real unprivileged user in group rkt (``setpriv``); the one who "does reach
the TPM" is simulated as root with a connection of its own but without the AK secret. The
forgery that issue #11 describes (re-derive the AK from a fixed template, reset PCR 23, replay
the log without the evil pod, quote over the verifier's nonce) must not pass ``rkt attest
verify`` with the pinned AK.
"""

from __future__ import annotations

import hashlib
import os
import pty
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from tpm2_pytss import (  # type: ignore[import-untyped]
    ESAPI,
    ESYS_TR,
    TPM2_ALG,
    TPM2B_AUTH,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE_CREATE,
    TPMA_OBJECT,
    TPML_DIGEST_VALUES,
    TPMT_HA,
    TPMT_SIG_SCHEME,
    TPMU_HA,
    TSS2_Exception,
)

from tests.conftest import ConfigDirs
from tests.integration._attest import attest_quote
from tests.integration.conftest import RKT, ensure_user, require_root, rkt
from trustd.privileged.measure import EMBEDDED_PCR, Measurer, decode_log
from trustd.privileged.measure._aksecret import load_or_create
from trustd.privileged.measure._esys import connect
from trustd.privileged.measure._swtpm import _spawn, load_state
from trustd.privileged.measure._unixtpm import UnixTcti
from trustd.privileged.measure.bundle import ATTEST_FILE, EVENTLOG_FILE, SIG_FILE

pytestmark = pytest.mark.skipif(
    any(shutil.which(p) is None for p in ("swtpm", "setpriv")), reason="needs swtpm and setpriv"
)

NONCE = "5eed0123456789abcdef"
_ATTRS = (
    TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.SIGN_ENCRYPT
    | TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
)


def member(*cmd: str) -> subprocess.CompletedProcess[str]:
    """``cmd`` as the real unprivileged user in group rkt (its result is the caller's to judge)."""
    user = ensure_user()
    argv = ["setpriv", f"--reuid={user}", "--regid=rkt", "--init-groups", "--", *cmd]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)


def started(dirs: ConfigDirs, tmp_path: Path) -> Path:
    """The data dir's embedded swtpm, started by root's ordinary ``rkt attest ak``."""
    require_root()
    rkt(dirs, "attest", "ak", "--out", str(tmp_path / "ak.pem"), check=True)
    return dirs.data / "tpm"


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return True
    return state in {"Z", "X"}


def wait_gone(*pids: int) -> bool:
    """Poll a bounded number of times (no assertion on how fast)."""
    for _ in range(600):
        if all(gone(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def supervisors(tpm: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or gone(int(proc.name)):
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"/_swtpmd.py") for a in args) and str(tpm).encode() in args:
            found.append(int(proc.name))
    return found


def test_a_group_member_cannot_reach_the_tpm_or_read_its_state(
    shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    tpm = started(shared_dirs, tmp_path)
    state = load_state(tpm)
    assert state is not None
    assert (
        member("test", "-x", str(shared_dirs.data)).returncode == 0
    )  # the data dir is traversable
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        "    s.connect(sys.argv[1])\n"
        "except PermissionError:\n"
        "    print('refused'); sys.exit(0)\n"
        "print('connected'); sys.exit(1)\n"
    )
    for name in ("swtpm.sock", "swtpm.ctrl"):
        result = member("/usr/bin/python3", "-c", probe, str(tpm / name))
        assert (result.returncode, result.stdout.strip()) == (0, "refused"), result.stderr
    for name in ("swtpm-state/tpm2-00.permall", "ak.secret", "swtpm.json"):
        assert (tpm / name).exists()
        assert member("cat", str(tpm / name)).returncode != 0
    args = Path(f"/proc/{state.swtpm_pid}/cmdline").read_bytes().split(b"\0")
    assert not [a for a in args if b"tcp" in a]  # no TCP channel for anyone to connect to
    assert tpm.stat().st_mode & 0o777 == 0o700 and tpm.stat().st_uid == 0


def _forge(tpm: Path, nonce: bytes) -> tuple[bytes, bytes]:
    """The issue #11 forgery, by one who reaches the TPM but holds no AK secret."""
    events = decode_log((tpm / "eventlog.json").read_bytes())
    with ESAPI(UnixTcti(tpm)) as ctx:
        for unique in (hashlib.sha256(b"trustd attestation key v1").digest(), bytes(32)):
            template = TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256:null", objectAttributes=_ATTRS)
            template.publicArea.unique.ecc.x = unique
            handle, *_ = ctx.create_primary(TPM2B_SENSITIVE_CREATE(), template, ESYS_TR.OWNER)
        with pytest.raises(TSS2_Exception, match=r"(?i)locality"):  # pod starts' PCR: no reset
            ctx.pcr_reset(ESYS_TR.PCR0 + EMBEDDED_PCR)
        ctx.pcr_reset(ESYS_TR.PCR23)  # 23 can be reset: replay the log there instead
        for record in events:  # the log "without the evil pod": here, all of it
            sha = dict(record.digests)["sha256"]
            value = TPMT_HA(hashAlg=TPM2_ALG.SHA256, digest=TPMU_HA(sha256=bytes.fromhex(sha)))
            ctx.pcr_extend(ESYS_TR.PCR23, TPML_DIGEST_VALUES([value]))
        scheme = TPMT_SIG_SCHEME(scheme=TPM2_ALG.ECDSA)
        scheme.details.any.hashAlg = TPM2_ALG.SHA256
        attest, sig = ctx.quote(handle, f"sha256:{EMBEDDED_PCR}", nonce, scheme)
        ctx.flush_context(handle)
        return bytes(attest), bytes(sig.marshal())


def test_one_who_reaches_the_tpm_cannot_forge_a_quote_for_the_pinned_ak(
    shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    require_root()
    measurer = Measurer(shared_dirs.data, env={}, device=Path("/nonexistent"))
    assert measurer.pcr == EMBEDDED_PCR
    measurer.extend(EMBEDDED_PCR, {"kind": "pod-start", "data": {"pod": "evil"}})
    (tmp_path / "genuine").mkdir()
    genuine = attest_quote(shared_dirs, tmp_path / "genuine", NONCE)
    assert "quote verified" in genuine.verify(shared_dirs, check=True).stdout
    forged = tmp_path / "forged"
    shutil.copytree(genuine.bundle, forged)
    attest, sig = _forge(shared_dirs.data / "tpm", bytes.fromhex(NONCE))
    (forged / ATTEST_FILE).write_bytes(attest)
    (forged / SIG_FILE).write_bytes(sig)
    (forged / EVENTLOG_FILE).write_bytes((shared_dirs.data / "tpm" / "eventlog.json").read_bytes())
    refused = rkt(
        shared_dirs, "attest", "verify", str(forged), "--ak", str(genuine.ak), "--nonce", NONCE
    )
    assert refused.returncode != 0 and "quote verified" not in refused.stdout
    assert "signature" in refused.stderr
    assert (tmp_path / "genuine" / "ak.pem").read_bytes() == genuine.ak.read_bytes()


def test_trustds_ak_loaded_in_the_tpm_cannot_sign_without_its_auth(
    shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    tpm = started(shared_dirs, tmp_path)
    with connect("embedded", "swtpm", socket_dir=tpm, ak_secret=load_or_create(tpm)) as session:
        handle, public = session._create_ak()  # trustd's own AK, as in every quote
        assert bytes(public.to_pem()) == (tmp_path / "ak.pem").read_bytes()
        ctx = session._ctx
        scheme = TPMT_SIG_SCHEME(scheme=TPM2_ALG.ECDSA)
        scheme.details.any.hashAlg = TPM2_ALG.SHA256
        for wrong in (b"", hashlib.sha256(b"guess").digest()):
            ctx.tr_set_auth(handle, TPM2B_AUTH(wrong))
            with pytest.raises(TSS2_Exception, match=r"(?i)auth"):
                ctx.quote(handle, "sha256:23", b"01234567", scheme)
        ctx.flush_context(handle)


def test_the_swtpm_is_detached_and_a_pty_caller_gets_eof(
    shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    require_root()
    master, slave = pty.openpty()
    argv = [RKT, *shared_dirs.flags(), "attest", "ak", "--out", str(tmp_path / "ak.pem")]
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    output = b""
    for _ in range(1200):  # bounded: EOF (EIO) must come once rkt exits, not after the swtpm
        if not select.select([master], [], [], 0.1)[0]:
            continue
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    else:
        pytest.fail("the pty never reached EOF: something rkt started still holds it")
    os.close(master)
    assert proc.wait(timeout=60) == 0, output.decode(errors="replace")
    state = load_state(shared_dirs.data / "tpm")
    assert state is not None
    for pid in (state.pid, state.swtpm_pid):
        for fd in ("0", "1", "2"):
            target = str(Path(f"/proc/{pid}/fd/{fd}").readlink())
            assert target in ("/dev/null", str(shared_dirs.data / "tpm" / "swtpm.log")), target
        assert os.getsid(pid) not in (proc.pid, os.getsid(0))  # not the caller's session
        fds = {str(link.readlink()) for link in Path(f"/proc/{pid}/fd").iterdir()}
        assert not [f for f in fds if f.startswith("/dev/pts")]


def test_one_swtpm_per_data_dir(shared_dirs: ConfigDirs, tmp_path: Path) -> None:
    require_root()
    runs = [
        subprocess.Popen(
            [RKT, *shared_dirs.flags(), "attest", "ak", "--out", str(tmp_path / f"ak{n}.pem")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for n in range(3)
    ]
    for proc in runs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    tpm = shared_dirs.data / "tpm"
    assert len(supervisors(tpm)) == 1
    with pytest.raises(OSError, match="another supervisor"):
        _spawn(tpm)  # a second supervisor for the same directory refuses to start (and exits)
    for _ in range(600):
        if len(supervisors(tpm)) == 1:
            break
        time.sleep(0.05)
    state = load_state(tpm)
    assert state is not None and supervisors(tpm) == [state.pid]
    assert len({(tmp_path / f"ak{n}.pem").read_bytes() for n in range(3)}) == 1


def test_removing_the_data_dir_stops_the_swtpm(shared_dirs: ConfigDirs, tmp_path: Path) -> None:
    tpm = started(shared_dirs, tmp_path)
    state = load_state(tpm)
    assert state is not None and not gone(state.pid) and not gone(state.swtpm_pid)
    shutil.rmtree(shared_dirs.data)
    assert wait_gone(state.pid, state.swtpm_pid)


def test_the_stop_verb_stops_it_and_the_next_use_starts_a_new_one(
    shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    tpm = started(shared_dirs, tmp_path)
    state = load_state(tpm)
    assert state is not None
    denied = member(RKT, *shared_dirs.flags(), "attest", "stop-tpm")
    assert denied.returncode != 0 and not gone(state.swtpm_pid)  # root's alone
    stopped = rkt(shared_dirs, "attest", "stop-tpm", check=True)
    assert "stopped the embedded swtpm" in stopped.stdout
    assert wait_gone(state.pid, state.swtpm_pid)
    assert not (tpm / "swtpm.sock").exists()
    assert "no embedded swtpm runs" in rkt(shared_dirs, "attest", "stop-tpm", check=True).stdout
    rkt(shared_dirs, "attest", "ak", "--out", str(tmp_path / "again.pem"), check=True)
    assert (tmp_path / "again.pem").read_bytes() == (tmp_path / "ak.pem").read_bytes()
    again = load_state(tpm)
    assert again is not None and again.starts == 2 and not gone(again.swtpm_pid)

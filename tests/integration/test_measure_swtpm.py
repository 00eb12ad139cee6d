"""trustd.privileged.measure against a real swtpm, checked independently with tpm2-tools.

Every test gets its own ``<data-dir>`` under tmp_path, hence its own embedded swtpm, which the
fixture stops at teardown.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from trustd.privileged.measure import (
    MeasurementError,
    Measurer,
    decode_log,
    decode_pcr_file,
    event_digest,
    read_bundle,
    replay,
    stop_embedded,
)
from trustd.privileged.measure._swtpm import load_state
from trustd.privileged.measure._unixtpm import tools_tcti
from trustd.privileged.measure.bundle import ATTEST_FILE, EVENTLOG_FILE, PCRS_FILE, SIG_FILE
from trustd.shared.attest import QuoteBundle, load_ak_pem, verify_bundle
from trustd.shared.errors import LocalStateError

pytestmark = pytest.mark.skipif(
    any(shutil.which(p) is None for p in ("swtpm", "tpm2_pcrread", "tpm2_checkquote")),
    reason="needs swtpm and tpm2-tools (make apt installs them)",
)

NONCE = bytes.fromhex("0011223344556677")
VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "swtpm-quote"
NO_DEVICE = {"env": {}, "device": Path("/nonexistent/tpmrm0")}


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    stop_embedded(tmp_path)


def measurer(data_dir: Path, **kw: object) -> Measurer:
    return Measurer(data_dir, **NO_DEVICE, **kw)  # type: ignore[arg-type]


def tools_env(data_dir: Path) -> dict[str, str]:
    """root's tpm2-tools reach the embedded swtpm through the cmd: TCTI and trustd's relay."""
    assert load_state(data_dir / "tpm") is not None
    return {**os.environ, "TPM2TOOLS_TCTI": tools_tcti(data_dir / "tpm")}


def pcrread(data_dir: Path, spec: str, tmp: Path) -> bytes:
    out = tmp / "pcr.bin"
    subprocess.run(
        ["tpm2_pcrread", "-o", str(out), spec],
        env=tools_env(data_dir),
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


def checkquote(bundle: Path, nonce_hex: str) -> subprocess.CompletedProcess[bytes]:
    argv = ["tpm2_checkquote", "-u", str(bundle / "ak.pub.pem"), "-m", str(bundle / ATTEST_FILE)]
    argv += ["-s", str(bundle / SIG_FILE), "-f", str(bundle / PCRS_FILE), "-g", "sha256"]
    return subprocess.run([*argv, "-q", nonce_hex], capture_output=True, check=False)


def test_embedded_swtpm_starts_on_a_root_only_socket_and_is_reused(data_dir: Path) -> None:
    first = measurer(data_dir)
    first.extend(23, {"kind": "test", "data": {"n": 1}})
    assert first.target is not None and first.target.started == "started"
    state = load_state(data_dir / "tpm")
    assert state is not None
    assert (data_dir / "tpm").stat().st_mode & 0o777 == 0o700
    for name in ("swtpm.sock", "swtpm.ctrl"):
        st = (data_dir / "tpm" / name).lstat()
        assert stat.S_ISSOCK(st.st_mode) and st.st_mode & 0o777 == 0o600 and st.st_uid == 0
    cmdline = Path(f"/proc/{state.swtpm_pid}/cmdline").read_bytes().split(b"\0")
    assert not [a for a in cmdline if b"tcp" in a]  # no TCP channel at all
    second = measurer(data_dir)
    second.extend(23, {"kind": "test", "data": {"n": 2}})
    assert second.target is not None and second.target.started is None
    assert load_state(data_dir / "tpm") == state
    assert "running" in second.status().describe()


def test_extend_is_sha256_of_old_and_digest(data_dir: Path, tmp_path: Path) -> None:
    m = measurer(data_dir)
    m.extend(23, {"kind": "warm-up", "data": {"pod": "p1"}})
    before = pcrread(data_dir, "sha256:23", tmp_path)
    content = {"kind": "pod-start", "data": {"image": "sha512-" + "ab" * 32, "signers": ["1F5C"]}}
    record = m.extend(23, content)
    after = pcrread(data_dir, "sha256:23", tmp_path)
    digest = event_digest(content, "sha256")
    assert record.digest("sha256") == digest
    assert (
        digest
        == hashlib.sha256(
            b'{"data":{"image":"sha512-' + b"ab" * 32 + b'","signers":["1F5C"]},"kind":"pod-start"}'
        ).digest()
    )
    assert after == hashlib.sha256(before + digest).digest()


def test_event_log_replays_to_every_bank(data_dir: Path, tmp_path: Path) -> None:
    m = measurer(data_dir)
    for n in range(3):
        m.extend(23, {"kind": "pod-start", "data": {"n": n, "name": "ünïcode"}})
    bundle = m.quote(NONCE, [23], tmp_path / "q")
    assert [r.recnum for r in bundle.events] == [0, 1, 2, 3]
    assert bundle.events[0].content["kind"] == "tpm-epoch"
    for bank in ("sha1", "sha256", "sha384"):
        assert replay(bundle.events, 23, bank) == pcrread(data_dir, f"{bank}:23", tmp_path)


def test_checkquote_accepts_our_quote_and_refuses_a_wrong_nonce(
    data_dir: Path, tmp_path: Path
) -> None:
    m = measurer(data_dir)
    m.extend(23, {"kind": "pod-start", "data": {"image": "sha512-1"}})
    out = tmp_path / "bundle"
    m.quote(NONCE, [0, 23], out)
    ok = checkquote(out, NONCE.hex())
    assert ok.returncode == 0, ok.stderr
    assert checkquote(out, "0011223344556678").returncode != 0
    parsed = read_bundle(out, check_digests=True)
    verified = verify_bundle(QuoteBundle.load(out), load_ak_pem(parsed.ak_pem), NONCE)
    assert verified is not None  # the verifier engineer's trustd.shared.attest accepts it too
    assert parsed.pcrs.selection == (("sha256", (0, 23)),)
    assert parsed.pcrs.value_map()[("sha256", 23)] == replay(parsed.events, 23, "sha256")
    assert parsed.ak_pem == m.ak_public_pem() == measurer(data_dir).ak_public_pem()


def test_a_tpm2_quote_bundle_parses_with_our_readers(data_dir: Path, tmp_path: Path) -> None:
    m = measurer(data_dir)
    m.extend(23, {"kind": "pod-start", "data": {"pod": "p1"}})
    env, out = tools_env(data_dir), tmp_path / "tools"
    out.mkdir()

    def tool(*argv: str) -> None:
        done = subprocess.run(argv, env=env, cwd=out, capture_output=True, check=False)
        assert done.returncode == 0, done.stderr.decode()

    attrs = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign"
    tool(
        "tpm2_createprimary",
        "-C",
        "o",
        "-G",
        "rsa2048:rsassa-sha256:null",
        "-a",
        attrs,
        "-c",
        "ak.ctx",
    )
    tool("tpm2_readpublic", "-c", "ak.ctx", "-f", "pem", "-o", "ak.pub.pem")
    tool(
        "tpm2_quote",
        "-c",
        "ak.ctx",
        "-l",
        "sha256:0,16,23",
        "-q",
        NONCE.hex(),
        "-m",
        ATTEST_FILE,
        "-s",
        SIG_FILE,
        "-o",
        PCRS_FILE,
        "-g",
        "sha256",
    )
    shutil.copy(data_dir / "tpm" / "eventlog.json", out / EVENTLOG_FILE)
    bundle = read_bundle(out, check_digests=True)
    assert bundle.pcrs.selection == (("sha256", (0, 16, 23)),)
    assert bundle.pcrs.value_map()[("sha256", 23)] == replay(bundle.events, 23, "sha256")
    assert checkquote(out, NONCE.hex()).returncode == 0


def test_the_shared_swtpm_vector_pcr_file_parses() -> None:
    pcrs = decode_pcr_file((VECTORS / "quote.pcrs.bin").read_bytes())
    assert pcrs.selection == (("sha256", (0, 15)),)
    assert pcrs.value_map()[("sha256", 15)] == (VECTORS / "pcr15.sha256.bin").read_bytes()


def test_backend_dying_mid_run_fails_closed_and_a_new_measurer_restarts_it(
    data_dir: Path, tmp_path: Path
) -> None:
    m = measurer(data_dir)
    m.extend(23, {"kind": "pod-start", "data": {"n": 1}})
    old = load_state(data_dir / "tpm")
    assert old is not None
    stop_embedded(data_dir)
    with pytest.raises(MeasurementError, match=r"measurement \(swtpm\)"):
        m.extend(23, {"kind": "pod-start", "data": {"n": 2}})
    fresh = measurer(data_dir)
    record = fresh.extend(23, {"kind": "pod-start", "data": {"n": 3}})
    assert fresh.target is not None and fresh.target.started is not None
    assert fresh.target.started.startswith("restarted")
    new = load_state(data_dir / "tpm")
    assert new is not None and new.starts == 2 and new.pid != old.pid
    bundle = fresh.quote(NONCE, [23], tmp_path / "q")
    assert bundle.events[0].content["kind"] == "tpm-epoch"
    epoch = bundle.events[0].content["data"]
    assert isinstance(epoch, dict) and epoch["swtpm_starts"] == 2
    assert str(epoch["previous_log"]).startswith("eventlog.")
    assert (data_dir / "tpm" / str(epoch["previous_log"])).is_file()
    assert record.recnum == 1
    assert replay(bundle.events, 23, "sha256") == pcrread(data_dir, "sha256:23", tmp_path)


def test_a_foreign_extend_stops_measurement(data_dir: Path) -> None:
    m = measurer(data_dir)
    m.extend(23, {"kind": "pod-start", "data": {"pod": "p1"}})
    subprocess.run(
        ["tpm2_pcrextend", "23:sha256=" + "00" * 32],
        env=tools_env(data_dir),
        check=True,
        capture_output=True,
    )
    with pytest.raises(MeasurementError, match="another program extended or reset"):
        measurer(data_dir).extend(23, {"kind": "pod-start", "data": {"pod": "p1"}})


def test_best_effort_records_not_measured(data_dir: Path) -> None:
    m = measurer(data_dir, mode="best-effort")
    assert m.extend(23, {"kind": "pod-start", "data": {"n": 1}}).measured
    stop_embedded(data_dir)
    record = m.extend(23, {"kind": "pod-start", "data": {"n": 2}})
    assert not record.measured and record.recnum is None
    assert record.backend == "swtpm" and record.reason
    unreachable = Measurer(data_dir, tcti="swtpm:host=127.0.0.1,port=9", mode="best-effort")
    assert not unreachable.extend(23, {"kind": "pod-start", "data": {"pod": "p1"}}).measured
    with pytest.raises(MeasurementError, match=r"measurement \(tcti\)"):
        Measurer(data_dir, tcti="swtpm:host=127.0.0.1,port=9").extend(
            23, {"kind": "x", "data": {"pod": "p1"}}
        )


def test_extend_all_is_one_session_with_the_same_log(tmp_path: Path) -> None:
    """Several events in one session replay exactly like single extends."""
    measurer = Measurer(tmp_path, pcr=23)
    try:
        events = [{"kind": "image", "data": {"pod": "p", "n": i}} for i in range(3)]
        records = measurer.extend_all(23, events)
        log = decode_log((tmp_path / "tpm/eventlog.json").read_bytes())
        assert len(log) == 4  # the epoch record, then ours
        assert [r.recnum for r in records] == [r.recnum for r in log[1:]]
        assert all(r.measured for r in records)
    finally:
        stop_embedded(tmp_path)


def test_an_older_trustds_tcp_swtpm_is_stopped_and_replaced(data_dir: Path) -> None:
    """Upgrade: a version-1 swtpm.json names a TCP swtpm any local user could open."""
    tpm = data_dir / "tpm"
    (tpm / "swtpm-state").mkdir(mode=0o700, parents=True)
    tpm.chmod(0o700)
    for _ in range(5):  # a free pair of ports, as the old trustd picked them
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        argv = ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={tpm / 'swtpm-state'}"]
        argv += ["--server", f"type=tcp,port={port},bindaddr=127.0.0.1"]
        argv += ["--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1", "--daemon"]
        argv += ["--flags", "not-need-init,startup-clear", "--pid", f"file={tpm / 'swtpm.pid'}"]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode == 0:
            break
    assert done.returncode == 0, done.stderr
    old = int((tpm / "swtpm.pid").read_text())
    legacy = {"version": 1, "pid": old, "server_port": port, "ctrl_port": port + 1, "starts": 4}
    (tpm / "swtpm.json").write_text(json.dumps({**legacy, "started_at": "2025-01-01T00:00:00Z"}))
    assert "older trustd" in measurer(data_dir).status().reason
    m = measurer(data_dir)
    m.extend(m.pcr, {"kind": "pod-start", "data": {"n": 1}})
    for _ in range(600):  # bounded poll: the old daemon is gone (or a zombie of init's)
        try:
            if Path(f"/proc/{old}/stat").read_text().rsplit(")", 1)[-1].split()[0] in "ZX":
                break
        except OSError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the TCP swtpm {old} still runs")
    new = load_state(tpm)
    assert new is not None and new.starts == 5 and new.swtpm_pid != old
    assert m.target is not None and m.target.started and "older trustd" in m.target.started


def test_a_new_ak_secret_is_a_new_ak_which_must_be_pinned_again(data_dir: Path) -> None:
    m = measurer(data_dir)
    pinned = m.ak_public_pem()
    secret = data_dir / "tpm" / "ak.secret"
    assert secret.stat().st_mode & 0o777 == 0o600 and secret.stat().st_size == 32
    secret.unlink()
    with pytest.raises(MeasurementError, match=r"not the one pinned.*ak\.secret is new"):
        m.ak_public_pem()
    (data_dir / "tpm" / "ak.pub.pem").unlink()
    assert m.ak_public_pem() != pinned  # another secret derives another key
    secret.chmod(0o644)
    with pytest.raises(LocalStateError, match="0600 file"):
        m.ak_public_pem()

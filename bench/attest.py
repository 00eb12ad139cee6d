"""``rkt attest quote`` + ``rkt attest verify`` next to tpm2-tools doing the same on the same swtpm.

One data directory with its embedded swtpm (started by one ``rkt attest status``). Each round runs,
in an order rotated every round:

* trustd: ``rkt attest quote --nonce HEX --out DIR`` then ``rkt attest verify DIR --ak AK.pem
  --nonce HEX`` (the CLI as users run it: root program, AK derived from ak.secret as an owner
  primary, quote of PCR 14, event log copied; verify checks the signature, nonce, PCR digest and
  replays the event log against PCR 14).
* tpm2-tools, through the relay TCTI to the same swtpm: ``tpm2_createprimary -C o -G
  ecc256:ecdsa-sha256`` (a fresh primary signing AK, the shape trustd's AK has), ``tpm2_readpublic
  -f pem`` (the AK's PEM, as trustd's bundle carries), ``tpm2_quote`` of sha256:23 over the nonce,
  ``tpm2_checkquote`` against the PEM and nonce. It replays no event log (tpm2-tools has no
  CEL-JSON replay), so trustd does strictly more work.

Each tpm2-tools invocation opens the relay TCTI (a small Python process), as root's tools must
to reach the root-only UNIX socket (ADR 0007). Median, p90, ratio trustd/tpm2-tools.

Run by ``make bench`` as root (never by the tests). Target: ratio ≤ 2.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._rounds import interleaved, summary  # noqa: E402
from tests._policy import install_policy  # noqa: E402
from trustd.privileged.measure import stop_embedded  # noqa: E402
from trustd.privileged.measure._unixtpm import tools_tcti  # noqa: E402
from trustd.privileged.measure.measure import EMBEDDED_PCR  # noqa: E402

RUNS = int(os.environ.get("BENCH_ATTEST_RUNS", "20"))
RKT = str(Path(sys.executable).with_name("rkt"))
PCR = str(EMBEDDED_PCR)  # what rkt attest quote quotes by default here
AK_ATTRS = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign"


class Trustd:
    def __init__(self, work: Path, flags: list[str]) -> None:
        self.work, self.flags = work / "trustd", flags
        self.work.mkdir()
        self.ak = work / "ak.pem"
        self.rkt("attest", "ak", "--out", str(self.ak))

    def rkt(self, *args: str) -> None:
        done = subprocess.run([RKT, *self.flags, *args], capture_output=True, check=False)
        if done.returncode:
            raise SystemExit(f"bench/attest.py: rkt {args[1]} failed: {done.stderr.decode()}")

    def round(self, nonce: str) -> float:
        out = self.work / "bundle"
        shutil.rmtree(out, ignore_errors=True)
        began = time.perf_counter()
        self.rkt("attest", "quote", "--nonce", nonce, "--out", str(out))
        self.rkt("attest", "verify", str(out), "--ak", str(self.ak), "--nonce", nonce)
        return time.perf_counter() - began


class Tools:
    def __init__(self, work: Path, tpm_dir: Path) -> None:
        self.work = work / "tools"
        self.work.mkdir()
        self.env = {**os.environ, "TPM2TOOLS_TCTI": tools_tcti(tpm_dir)}

    def tool(self, *argv: str) -> None:
        done = subprocess.run(argv, env=self.env, cwd=self.work, capture_output=True, check=False)
        if done.returncode:
            raise SystemExit(f"bench/attest.py: {argv[0]} failed: {done.stderr.decode()}")

    def round(self, nonce: str) -> float:
        for name in ("ak.ctx", "ak.pem", "msg", "sig", "pcrs"):
            (self.work / name).unlink(missing_ok=True)
        began = time.perf_counter()
        self.tool(
            "tpm2_createprimary",
            "-Q",
            "-C",
            "o",
            "-G",
            "ecc256:ecdsa-sha256:null",
            "-a",
            AK_ATTRS,
            "-c",
            "ak.ctx",
        )
        self.tool("tpm2_readpublic", "-Q", "-c", "ak.ctx", "-f", "pem", "-o", "ak.pem")
        self.tool(
            "tpm2_quote", "-Q", "-c", "ak.ctx", "-l", f"sha256:{PCR}", "-q", nonce,
            "-m", "msg", "-s", "sig", "-o", "pcrs", "-g", "sha256",
        )  # fmt: skip
        self.tool("tpm2_flushcontext", "-t")  # no resource manager: free the AK as trustd does
        self.tool(
            "tpm2_checkquote", "-Q", "-u", "ak.pem", "-m", "msg", "-s", "sig", "-f", "pcrs",
            "-g", "sha256", "-q", nonce,
        )  # fmt: skip
        return time.perf_counter() - began


def _with_nonces(side: Trustd | Tools, nonces: list[str]) -> Callable[[int], float]:
    return lambda n: side.round(nonces[n])


def main() -> int:
    if os.geteuid() != 0:
        print("bench/attest.py: needs root (the embedded swtpm is root's)", file=sys.stderr)
        return 0
    if shutil.which("tpm2_quote") is None:
        print(
            "bench/attest.py: tpm2-tools not installed; make setup installs them", file=sys.stderr
        )
        return 0
    with tempfile.TemporaryDirectory(prefix="trustd-bench-attest-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        install_policy(work / "usr")
        data = work / "data"
        flags = [
            f"--dir={data}",
            f"--local-config={work / 'etc'}",
            f"--system-config={work / 'usr'}",
        ]
        try:
            subprocess.run([RKT, *flags, "attest", "status"], check=True, capture_output=True)
            sides = {"trustd": Trustd(work, flags), "tpm2-tools": Tools(work, data / "tpm")}
            for side in sides.values():
                side.round(secrets.token_hex(16))  # warm: page in binaries, create ak.secret
            nonces = [secrets.token_hex(16) for _ in range(RUNS)]  # one nonce per round, both sides
            rounds = {name: _with_nonces(side, nonces) for name, side in sides.items()}
            samples = interleaved(rounds, RUNS, warm=False)
        finally:
            stop_embedded(data)
    (mt, pt), (mo, po) = summary(samples["trustd"]), summary(samples["tpm2-tools"])
    print(f"quote + verify on the same embedded swtpm (PCR {PCR}, 16-byte nonce), {RUNS} rounds")
    print("  trustd:     rkt attest quote --nonce --out, rkt attest verify --ak --nonce")
    print("              (AK re-derived per quote, event log copied and replayed)")
    print("  tpm2-tools: tpm2_createprimary (ECC P-256 signing, owner), tpm2_readpublic -f pem,")
    print("              tpm2_quote, tpm2_flushcontext -t, tpm2_checkquote")
    print("              (relay TCTI per TPM tool; no event-log replay)")
    print("  median / p90")
    print(f"  {'trustd':<11} {mt * 1000:7.1f} ms / {pt * 1000:7.1f} ms")
    print(f"  {'tpm2-tools':<11} {mo * 1000:7.1f} ms / {po * 1000:7.1f} ms")
    verdict = "ok" if mt / mo <= 2.0 else "ABOVE the 2x target"
    print(f"  ratio trustd/tpm2-tools (medians) {mt / mo:5.2f}  p90 {pt / po:5.2f}  ({verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""trustd benchmarks, run by ``make bench`` (never by the tests).

verify: detached-signature verification of one large file by trustd (Sequoia streaming the
file), next to ``gpg --verify`` and ``sha512sum`` over the same bytes in the same run.
Figures are medians of several runs, reported as ratios against the peers.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests._gpg import GpgHome  # noqa: E402
from trustd.shared.appc import ACIdentifier  # noqa: E402
from trustd.shared.verify import Keyring, TrustedKey, parse_public_keys, verify_detached  # noqa: E402

SIZE_MB = int(os.environ.get("BENCH_SIZE_MB", "200"))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))


def median_seconds(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_verify(work: Path) -> None:
    gpg = GpgHome(work / "gnupg")
    fpr = gpg.generate("Bench <bench@trustd.test>")
    data = work / "image.aci"
    with data.open("wb") as f:
        for _ in range(SIZE_MB):
            f.write(os.urandom(1 << 20))
    sig = gpg.sign(fpr, data, work / "image.aci.asc")
    key = parse_public_keys(gpg.export(fpr), source="bench")[0]
    ring = Keyring(
        ACIdentifier("bench.trustd.test/app"), (TrustedKey(key, None, "local", work / fpr),)
    )
    signature = sig.read_bytes()
    gpg_cmd = [
        "gpg",
        "--homedir",
        str(gpg.home),
        "--batch",
        "--quiet",
        "--verify",
        str(sig),
        str(data),
    ]
    results = {
        "trustd verify": median_seconds(lambda: verify_detached(data, signature, ring)),
        "gpg --verify": median_seconds(
            lambda: subprocess.run(gpg_cmd, check=True, capture_output=True)
        ),
        "sha512sum": median_seconds(
            lambda: subprocess.run(["sha512sum", str(data)], check=True, capture_output=True)
        ),
    }
    print(f"signature verification of {SIZE_MB} MB, median of {RUNS} runs")
    base = results["trustd verify"]
    for name, secs in results.items():
        print(
            f"  {name:<14} {secs * 1000:8.1f} ms  {SIZE_MB / secs:7.1f} MB/s  "
            f"trustd/this = {base / secs:5.2f}"
        )


def _big_aci(path: Path, megabytes: int) -> None:
    """An uncompressed ACI of a few large random files (tar walking stays cheap)."""
    import io  # noqa: PLC0415
    import json  # noqa: PLC0415
    import tarfile  # noqa: PLC0415

    manifest = {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": "bench.trustd.test/big",
        "labels": [{"name": "os", "value": "linux"}, {"name": "arch", "value": "amd64"}],
    }
    with tarfile.open(path, "w") as tar:
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        root = tarfile.TarInfo("rootfs")
        root.type = tarfile.DIRTYPE
        tar.addfile(root)
        for i in range(max(megabytes // 50, 1)):
            blob = os.urandom(min(50, megabytes) << 20)
            info = tarfile.TarInfo(f"rootfs/blob{i}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


def bench_fetch(work: Path) -> None:
    """``rkt fetch`` of an https URL (download, inspection and hash, signature, policy,
    store: the CLI as a user runs it, as root, so the fetch runs in the dropped child) next
    to ``curl -o FILE`` from the same local HTTPS server (tests/_https.py, trustme
    certificates) and ``sha512sum`` of the same bytes, in interleaved rounds."""
    import shutil  # noqa: PLC0415

    import trustme  # noqa: PLC0415

    from bench._rounds import interleaved, once, summary  # noqa: PLC0415
    from tests._https import LOCAL_NAMES, LocalServer, reply  # noqa: PLC0415
    from tests._policy import install_policy  # noqa: PLC0415

    rkt = str(Path(sys.executable).with_name("rkt"))
    gpg = GpgHome(work / "gnupg")
    fpr = gpg.generate("Bench <bench@trustd.test>")
    aci = work / "big.aci"
    _big_aci(aci, SIZE_MB)
    size_mb = aci.stat().st_size / (1 << 20)
    sig = gpg.sign(fpr, aci, work / "big.aci.asc")
    (work / "key.asc").write_bytes(gpg.export(fpr))
    work.chmod(0o755)  # the fetch child (rkt-fetch, group rkt) reaches its data dir
    install_policy(work / "usr")
    flags = [f"--system-config={work / 'usr'}", f"--local-config={work / 'etc'}"]
    trust = [rkt, *flags, "trust", "--prefix=bench.trustd.test/big", "--skip-fingerprint-review"]
    subprocess.run([*trust, str(work / "key.asc")], check=True, capture_output=True)
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(work / "ca.pem"))
    os.environ["SSL_CERT_FILE"] = str(work / "ca.pem")  # rkt's trust store for this bench
    body, sig_body = aci.read_bytes(), sig.read_bytes()
    with LocalServer(tls=ca.issue_cert(*LOCAL_NAMES)) as srv:
        srv.routes["/big.aci"] = reply(body)
        srv.routes["/big.aci.asc"] = reply(sig_body)
        url = srv.url("/big.aci")

        def fetch(n: int) -> float:
            return once([rkt, *flags, f"--dir={work / f'data{n}'}", "fetch", url])

        def curl(n: int) -> float:
            cmd = ["curl", "-s", "--fail", "--cacert", str(work / "ca.pem")]
            return once([*cmd, "-o", str(work / f"curl{n}.aci"), url])

        def clean(n: int) -> None:
            shutil.rmtree(work / f"data{n}", ignore_errors=True)
            (work / f"curl{n}.aci").unlink(missing_ok=True)

        samples = interleaved(
            {
                "trustd fetch": fetch,
                "curl -o FILE": curl,
                "sha512sum": ["sha512sum", str(aci)],
            },
            RUNS,
            after_round=clean,
        )
        clean(-1)
    print(
        f"fetch + verify + store of a {size_mb:.0f} MiB ACI over local HTTPS, "
        f"{RUNS} interleaved rounds (median / p90)"
    )
    median = {name: summary(values)[0] for name, values in samples.items()}
    for name, values in samples.items():
        med, p90 = summary(values)
        print(f"  {name:<14} {med * 1000:8.1f} / {p90 * 1000:8.1f} ms  {size_mb / med:7.1f} MiB/s")
    ratio = median["curl -o FILE"] / median["trustd fetch"]
    verdict = "ok" if ratio >= 0.7 else "BELOW"
    print(f"  trustd throughput / curl's = {ratio:.2f}x ({verdict} 0.7x)")
    print(f"  trustd takes {median['trustd fetch'] / median['sha512sum']:.2f}x sha512sum's time")


def main() -> int:
    if "--fetch-only" not in sys.argv:
        with tempfile.TemporaryDirectory(prefix="trustd-bench-") as tmp:
            bench_verify(Path(tmp))
    if os.geteuid() != 0:
        print("bench/run.py: the fetch bench needs root (rkt fetch drops to rkt-fetch)")
        return 0
    with tempfile.TemporaryDirectory(prefix="trustd-bench-") as tmp:
        bench_fetch(Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
    """rkt fetch of an https URL (download + one inspect pass + signature + store) vs peers."""
    import trustme  # noqa: PLC0415

    from tests._https import LOCAL_NAMES, LocalServer, reply  # noqa: PLC0415
    from tests._policy import SHIPPED  # noqa: PLC0415
    from trustd.shared.insecure import Insecure  # noqa: PLC0415
    from trustd.shared.keystore import Keystore  # noqa: PLC0415
    from trustd.shared.policy import loads_policy  # noqa: PLC0415
    from trustd.shared.store import ImageStore  # noqa: PLC0415
    from trustd.unprivileged.fetch import FetchContext, FetchRequest, fetch_image, parse_image_ref  # noqa: PLC0415

    gpg = GpgHome(work / "gnupg")
    fpr = gpg.generate("Bench <bench@trustd.test>")
    aci = work / "big.aci"
    _big_aci(aci, SIZE_MB)
    sig = gpg.sign(fpr, aci, work / "big.aci.asc")
    keystore = Keystore(work / "sys", work / "local")
    keystore.add(parse_public_keys(gpg.export(fpr), source="bench")[0], None)
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(work / "ca.pem"))
    os.environ["SSL_CERT_FILE"] = str(work / "ca.pem")
    body, sig_body = aci.read_bytes(), sig.read_bytes()
    with LocalServer(tls=ca.issue_cert(*LOCAL_NAMES)) as srv:
        srv.routes["/big.aci"] = reply(body)
        srv.routes["/big.aci.asc"] = reply(sig_body)

        def fetch_once() -> None:
            store_dir = Path(tempfile.mkdtemp(dir=work))
            ctx = FetchContext(
                ImageStore.open(store_dir, create=True),
                keystore,
                Insecure.NONE,
                loads_policy(SHIPPED.read_bytes(), source=str(SHIPPED)),
            )
            fetch_image(FetchRequest(parse_image_ref(srv.url("/big.aci"))), ctx)

        trustd_s = median_seconds(fetch_once)
    gpg_cmd = [
        "gpg",
        "--homedir",
        str(gpg.home),
        "--batch",
        "--quiet",
        "--verify",
        str(sig),
        str(aci),
    ]
    peers = {
        "sha512sum": median_seconds(
            lambda: subprocess.run(["sha512sum", str(aci)], check=True, capture_output=True)
        ),
        "gpg --verify": median_seconds(
            lambda: subprocess.run(gpg_cmd, check=True, capture_output=True)
        ),
    }
    print(f"fetch + verify + store of {SIZE_MB} MB over local HTTPS, median of {RUNS} runs")
    print(f"  {'trustd fetch':<14} {trustd_s * 1000:8.1f} ms  {SIZE_MB / trustd_s:7.1f} MB/s")
    for name, secs in peers.items():
        print(
            f"  {name:<14} {secs * 1000:8.1f} ms  {SIZE_MB / secs:7.1f} MB/s  "
            f"trustd takes {trustd_s / secs:5.2f}x as long"
        )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="trustd-bench-") as tmp:
        bench_verify(Path(tmp))
    with tempfile.TemporaryDirectory(prefix="trustd-bench-") as tmp:
        bench_fetch(Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())

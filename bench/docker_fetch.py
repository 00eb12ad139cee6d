"""``rkt fetch docker://…`` of a ~42 MiB multi-layer image from the local docker-registry, next
to ``skopeo copy docker://… oci:…`` of the same image, in the same run (issue #12).

The image is signed the way the tests sign (containers/image simple signing: ``skopeo copy
--sign-by`` with a gpg key and a registries.d ``lookaside-staging: file://…``); trustd trusts
that key with ``rkt trust --prefix docker://HOST:PORT/bench`` and fetches *without*
``--insecure-options=image``, so the measured fetch includes signature verification (the
target's condition). A second, clearly labelled line fetches an unsigned copy of the same
image with ``--insecure-options=image`` (the recorded opt-out).

Rounds are interleaved and the order rotates each round, so a slow phase of the machine
hits both tools alike; each round fetches into a fresh store (and a fresh OCI layout), so
nothing is cached. Reports the median, p90 and the median ratio. Run by ``make bench`` as
root (never by the tests): root's fetch drops to rkt-fetch as in production.
``BENCH_DOCKER_RUNS`` sets the number of rounds; ``--profile`` prints a cProfile of one
in-process fetch instead. ``BENCH_DOCKER_BASELINE=DIR`` adds a contender: the signed fetch by
the ``trustd`` package found in DIR (e.g. ``git archive OLD trustd | tar -x -C DIR``), in
the same rounds, for a before/after ratio from the same machine state.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._rounds import interleaved, summary  # noqa: E402
from tests._gpg import GpgHome  # noqa: E402
from tests._policy import install_policy  # noqa: E402
from tests.integration._registry import start_registry  # noqa: E402

RUNS = int(os.environ.get("BENCH_DOCKER_RUNS", "7"))
BASELINE = os.environ.get("BENCH_DOCKER_BASELINE", "")
_BASELINE = "import sys; from trustd.cli.main import main; sys.argv[0] = 'rkt'; sys.exit(main())"
RKT = str(Path(sys.executable).with_name("rkt"))
MiB = 1024 * 1024
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _words(rng: random.Random, n: int) -> bytes:
    vocab = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(6)) for _ in range(500)]
    return b" ".join(rng.choice(vocab) for _ in range(n // 7))


def _layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    plain = raw.getvalue()
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)
    return comp.compress(plain) + comp.flush(), "sha256:" + hashlib.sha256(plain).hexdigest()


def layers() -> list[dict[str, bytes]]:
    """Three layers, ~50 MB compressed: an incompressible blob, many small text files (the
    many small tar/gzip reads of a real distro layer), and mid-size half-random files."""
    rng = random.Random(12)  # noqa: S311 - test data, not crypto
    big = {"opt/blob.bin": rng.randbytes(24 * MiB), "bin/sh": b"#!/bin/true\n"}
    small = {f"usr/share/doc/p{i // 50}/f{i}.txt": _words(rng, 3000) for i in range(4000)}
    mid = {f"usr/lib/m{i}.so": rng.randbytes(20_000) + bytes(20_000) for i in range(600)}
    return [big, small, mid]


def write_layout(layout: Path) -> None:
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> tuple[str, int]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}", len(data)

    descriptors, diff_ids = [], []
    for files in layers():
        data, diff_id = _layer(files)
        digest, size = put(data)
        descriptors.append({"mediaType": OCI_LAYER, "digest": digest, "size": size})
        diff_ids.append(diff_id)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    cdigest, csize = put(json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": cdigest,
            "size": csize,
        },
        "layers": descriptors,
    }
    mdigest, msize = put(json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": mdigest,
                "size": msize,
                "annotations": {"org.opencontainers.image.ref.name": "bench"},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


def _summary(samples: list[float]) -> str:
    median, p90 = summary(samples)
    return f"median {median:6.2f} s   p90 {p90:6.2f} s"


CPU: dict[str, list[float]] = {}


def _timed(name: str, cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Wall seconds of one run of ``cmd``; its CPU seconds (user+sys, children included, as
    they were waited for) go to ``CPU[name]``. The warm-up round is recorded too: dropped."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    CPU.setdefault(name, []).append(cpu)
    return wall


def _signing(work: Path) -> tuple[GpgHome, str, Path]:
    """A gpg key and the registries.d that skopeo signs into and trustd reads from (a
    ``file://`` lookaside readable by rkt-fetch)."""
    gpg = GpgHome(work / "gnupg")
    fpr = gpg.generate("Bench Signer <bench@example.com>")
    look = work / "look"
    look.mkdir()
    rd = work / "registries.d"
    rd.mkdir()
    (rd / "default.yaml").write_text(
        f"default-docker:\n  lookaside: file://{look}\n  lookaside-staging: file://{look}\n"
    )
    return gpg, fpr, rd


def _push(work: Path, url: str, *sign: str, gpg: GpgHome | None = None) -> None:
    env = {**os.environ, "GNUPGHOME": str(gpg.home)} if gpg else None
    cmd = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
    cmd += ["--registries.d", str(work / "registries.d"), *sign]
    subprocess.run([*cmd, f"oci:{work / 'layout'}:bench", url], check=True, env=env)


def _trust(work: Path, host: str, gpg: GpgHome, fpr: str) -> None:
    """trustd's config: the test policy, the registries.d, the key trusted for the prefix."""
    install_policy(work / "usr")
    shutil.copytree(work / "registries.d", work / "etc" / "registries.d")
    key = work / "bench.asc"
    key.write_bytes(gpg.export(fpr))
    flags = [f"--system-config={work / 'usr'}", f"--local-config={work / 'etc'}"]
    trust = ["trust", "--prefix", f"docker://{host}/bench/signed", "--skip-fingerprint-review"]
    subprocess.run([RKT, *flags, *trust, str(key)], check=True, capture_output=True)


def main() -> int:
    if os.geteuid() != 0:
        print("bench/docker_fetch.py: needs root (rkt fetch drops to rkt-fetch)", file=sys.stderr)
        return 0
    if shutil.which("docker-registry") is None or shutil.which("skopeo") is None:
        print("bench/docker_fetch.py: needs docker-registry and skopeo", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory(prefix="trustd-bench-docker-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        write_layout(work / "layout")
        gpg, fpr, _rd = _signing(work)
        reg = start_registry(work / "reg", work / "storage")
        try:
            signed = f"docker://{reg.host}/bench/signed:latest"
            unsigned = f"docker://{reg.host}/bench/fetch:latest"
            _push(work, signed, "--sign-by", fpr, gpg=gpg)
            _push(work, unsigned)
            size = sum(p.stat().st_size for p in (work / "storage").rglob("data"))  # shared blobs
            if "--profile" in sys.argv or "--inproc" in sys.argv:
                return _profile(work, reg.host, "--profile" in sys.argv)
            _trust(work, reg.host, gpg, fpr)

            def rkt(name: str, url: str, insecure: str, base: str = "") -> Any:
                def fetch(i: int) -> float:
                    data = work / f"data{'b' if base else ''}{i}"
                    flags = [f"--dir={data}", f"--system-config={work / 'usr'}"]
                    flags += [f"--local-config={work / 'etc'}", f"--insecure-options={insecure}"]
                    if not base:
                        return _timed(name, [RKT, *flags, "fetch", url])
                    env = {**os.environ, "PYTHONPATH": base}  # -P: no cwd first
                    cmd = [sys.executable, "-P", "-c", _BASELINE, *flags, "fetch", url]
                    return _timed(name, cmd, env)

                return fetch

            def skopeo(i: int) -> float:
                dest = f"oci:{work / f'oci{i}'}:bench"
                cmd = ["skopeo", "copy", "--quiet", "--src-tls-verify=false", signed, dest]
                return _timed("skopeo", cmd)

            def clean(i: int) -> None:
                for d in work.glob(f"*{i}"):
                    shutil.rmtree(d, ignore_errors=True)

            contenders = {
                "trustd signed": rkt("trustd signed", signed, "http"),
                "skopeo": skopeo,
                "trustd unsigned": rkt("trustd unsigned", unsigned, "image,http"),
            }
            if BASELINE:
                contenders["baseline signed"] = rkt("baseline signed", signed, "http", BASELINE)
            # the warm round fills the page cache and the registry's
            samples = interleaved(contenders, RUNS, after_round=clean)
            for cpu in CPU.values():
                del cpu[0]  # the warm-up round
            clean(-1)
        finally:
            reg.stop()
    _report(samples, size)
    return 0


def _report(samples: dict[str, list[float]], size: int) -> None:
    load = os.getloadavg()
    print(f"docker:// fetch of a {size / MiB:.0f} MiB 3-layer image, {RUNS} interleaved rounds")
    print(f"  load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min, at the end)")
    for name, s in samples.items():
        print(f"  {name:15s} {_summary(s)}")
    skopeo_median = statistics.median(samples["skopeo"])
    skopeo_cpu = statistics.median(CPU["skopeo"])
    for name in ("trustd signed", "trustd unsigned", "baseline signed")[: 3 if BASELINE else 2]:
        ratio = statistics.median(samples[name]) / skopeo_median
        what = "signature verified" if name.endswith(" signed") else "--insecure-options=image"
        what += f", trustd from {BASELINE}" if name.startswith("baseline") else ""
        print(f"  ratio   {name}/skopeo = {ratio:.2f}x (median; {what})")
    for name in samples:  # user+sys of the whole process tree: steadier than wall under load
        cpu = statistics.median(CPU[name])
        print(f"  cpu     {name:15s} median {cpu:6.2f} s = {cpu / skopeo_cpu:.2f}x skopeo's")


def _profile(work: Path, host: str, profile: bool) -> int:
    """One in-process fetch of the signed image under cProfile (``--profile``), or the CPU
    time of 6 in-process fetches (``--inproc``): the work of the fetch child, without the
    interpreter start, the privilege drop and the root program."""
    import cProfile  # noqa: PLC0415
    import pstats  # noqa: PLC0415

    from tests.integration._registry import job  # noqa: PLC0415
    from trustd.shared.insecure import Insecure  # noqa: PLC0415
    from trustd.shared.keystore import Keystore  # noqa: PLC0415
    from trustd.shared.ocisig.registries_d import load_registries_d  # noqa: PLC0415
    from trustd.shared.store import ImageStore  # noqa: PLC0415
    from trustd.unprivileged.docker import fetch_docker  # noqa: PLC0415
    from trustd.unprivileged.docker.signatures import SignatureCheck  # noqa: PLC0415

    gpg = GpgHome(work / "gnupg")
    _trust(work, host, gpg, gpg.fingerprint("bench@example.com"))
    keystore = Keystore(work / "usr", work / "etc")
    registries = load_registries_d((work / "etc" / "registries.d",))
    check = SignatureCheck(keystore, registries, Insecure.HTTP)
    url = f"docker://{host}/bench/signed"

    def fetch(n: int) -> None:
        store = ImageStore.open(work / f"inproc{n}", create=True)
        fetch_docker(url, job(store, Insecure.HTTP, signatures=check))

    fetch(-1)  # warm: imports, page cache
    if not profile:
        cpu, wall = [], []
        for n in range(6):
            start, began = time.process_time(), time.perf_counter()
            fetch(n)
            cpu.append(time.process_time() - start)
            wall.append(time.perf_counter() - began)
        print(
            f"in-process signed fetch: CPU median {statistics.median(cpu):.3f} s, "
            f"wall median {statistics.median(wall):.3f} s"
        )
        return 0
    prof = cProfile.Profile()
    prof.enable()
    fetch(99)
    prof.disable()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())

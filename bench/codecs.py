"""Which codec for trustd's own files (docs/adr/0011): decode time of a realistic plan.json
and import cost, for the hand-written type-hint codec (trustd.shared.codec, which
``PodPlan.from_json`` now is), msgspec and pydantic v2, next to ``json.loads`` alone.

Run: ``.venv/bin/python bench/codecs.py`` (msgspec and pydantic are installed only to
measure: ``.venv/bin/pip install msgspec pydantic``). Never run by the tests.
"""

from __future__ import annotations

import importlib.util
import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trustd.privileged.executor.plan import (  # noqa: E402
    AppPlan,
    Mount,
    PodPlan,
    SeccompPlan,
    SeccompRulePlan,
    Volume,
)
from trustd.shared.codec import decode_json  # noqa: E402
from trustd.shared.isolation import default_spec  # noqa: E402

RUNS = 2000


def realistic_plan() -> bytes:
    """Two apps with rkt's default seccomp set, a profile with rules, env, mounts, caps."""
    syscalls = tuple(sorted(default_spec().syscalls))
    rules = tuple(
        SeccompRulePlan(
            (f"sys{i}", f"sys{i + 1}"), "SCMP_ACT_ERRNO", 1, ((0, "SCMP_CMP_EQ", i, 0),)
        )
        for i in range(40)
    )
    apps = tuple(
        AppPlan(
            name=f"app{n}",
            image_key="sha512-" + "ab" * 32,
            image_name="example.com/app",
            tree="/var/lib/rkt/private/tree/sha512-" + "ab" * 32,
            signers=("0123456789abcdef0123456789abcdef01234567",),
            insecure_image=False,
            exec=("/bin/sh", "-c", "echo hello"),
            env=tuple((f"VAR{i}", f"value{i}") for i in range(10)),
            uid=0,
            gid=0,
            user="0",
            group="0",
            working_dir="/",
            readonly_rootfs=False,
            capabilities=("CAP_CHOWN", "CAP_KILL", "CAP_SETUID", "CAP_SETGID"),
            seccomp=SeccompPlan("retain", syscalls, None, "rkt-default")
            if n == 0
            else SeccompPlan(
                "profile",
                (),
                1,
                "--seccomp profile=moby-default",
                profile="moby-default",
                profile_path="/usr/lib/rkt/seccomp/moby-default.json",
                profile_digest="sha256-" + "cd" * 32,
                default_action="SCMP_ACT_ERRNO",
                rules=rules,
            ),
            memory=1 << 28,
            cpu_millis=500,
            mounts=(Mount("data", "/data"),),
            image_version="1.0.0",
        )
        for n in range(2)
    )
    plan = PodPlan(
        uuid="0f5c3a4e-1b2d-4c3e-8f9a-0b1c2d3e4f5a",
        flavor="container",
        net="default",
        hostname="rkt-0f5c3a4e",
        apps=apps,
        volumes=(Volume("data", "host", "/srv/data", False),),
        insecure=(),
        masked_paths=True,
    )
    return plan.to_json().encode()


def per_call(fn: Callable[[], object]) -> float:
    fn()
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(RUNS):
            fn()
        samples.append((time.perf_counter() - start) / RUNS)
    return statistics.median(samples) * 1e6  # microseconds


def import_cost(module: str) -> float:
    """Cumulative import time of ``module`` (ms), from ``-X importtime``, median of 5."""
    samples = []
    for _ in range(5):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stderr
        line = [ln for ln in out.splitlines() if re.search(rf"\|\s+{re.escape(module)}$", ln)][-1]
        samples.append(int(line.split("|")[1]) / 1000)
    return statistics.median(samples)


COLD = {
    "trustd.shared.codec": "from trustd.shared.codec import decode_json; "
    "decode_json(data, PodPlan, 'p')",
    "msgspec": "import msgspec; msgspec.json.Decoder(PodPlan).decode(data)",
    "pydantic": "import pydantic; pydantic.TypeAdapter(PodPlan).validate_json(data)",
}


def cold(name: str, data: bytes) -> float:
    """Import + first decode (type compilation included) in a fresh process, ms, median of 5:
    what one ``rkt run-prepared`` pays, as it decodes plan.json once."""
    prog = (
        "import sys, time; sys.path.insert(0, '.');"
        "from trustd.privileged.executor.plan import PodPlan;"
        f"data = open({str(_PLAN)!r}, 'rb').read(); t = time.perf_counter();"
        f"{COLD[name]}; print((time.perf_counter() - t) * 1e3)"
    )
    _PLAN.write_bytes(data)
    runs = [
        float(subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True,
                             check=True, cwd=ROOT).stdout)
        for _ in range(5)
    ]  # fmt: skip
    return statistics.median(runs)


_PLAN = Path("/tmp/trustd-bench-plan.json")  # noqa: S108 - a scratch file of the bench


def main() -> None:
    data = realistic_plan()
    print(f"plan.json: {len(data)} bytes, {len(json.loads(data)['apps'])} apps")
    rows = [
        (
            "trustd.shared.codec decode_json (strict)",
            per_call(lambda: decode_json(data, PodPlan, "plan.json")),
        ),
        ("json.loads alone", per_call(lambda: json.loads(data))),
    ]
    if importlib.util.find_spec("msgspec"):
        import msgspec  # noqa: PLC0415

        dec = msgspec.json.Decoder(PodPlan)
        rows.append(("msgspec.json.Decoder(PodPlan dataclass)", per_call(lambda: dec.decode(data))))
    if importlib.util.find_spec("pydantic"):
        import pydantic  # noqa: PLC0415

        start = time.perf_counter()
        adapter = pydantic.TypeAdapter(PodPlan)
        build = (time.perf_counter() - start) * 1e3
        rows.append(
            (
                f"pydantic TypeAdapter(PodPlan) (schema build {build:.1f} ms)",
                per_call(lambda: adapter.validate_json(data)),
            )
        )
    for name, us in rows:
        print(f"  decode {us:9.1f} us  {name}")
    for module in ("trustd.shared.codec", "msgspec", "pydantic", "trustd.privileged.executor.run"):
        if module.startswith("trustd") or importlib.util.find_spec(module):
            print(f"  import {import_cost(module):9.1f} ms  {module}")
    if importlib.util.find_spec("pydantic"):
        print(f"  import {import_cost('pydantic.main'):9.1f} ms  pydantic.main (BaseModel)")
    for name in COLD:
        if name.startswith("trustd") or importlib.util.find_spec(name):
            print(f"  cold   {cold(name, data):9.1f} ms  import + first decode: {name}")


if __name__ == "__main__":
    main()

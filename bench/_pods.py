"""A bench's own data dir with the busybox image fetched, as the pod benches set it up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests._busybox import busybox_aci
from tests._policy import install_policy

RKT = str(Path(sys.executable).with_name("rkt"))


def data_dir_with_busybox(work: Path, name: str, exec_: list[str]) -> tuple[list[str], str]:
    """``work`` (made traversable: root's fetch runs as rkt-fetch, ADR 0005) with the tests'
    policy (it allows fly and the insecure import) and busybox ``exec_`` fetched as ``name``:
    the flags to pass to ``rkt`` and the image's full key."""
    work.chmod(0o755)
    flags = [
        f"--dir={work / 'data'}",
        f"--local-config={work / 'etc'}",
        f"--system-config={work / 'usr'}",
        "--insecure-options=image",
    ]
    install_policy(work / "usr")
    aci = busybox_aci(work / "bb.aci", name, exec_=exec_)
    key = subprocess.run(
        [RKT, *flags, "fetch", "--full", str(aci)], check=True, capture_output=True, text=True
    ).stdout.strip()
    return flags, key

"""``rkt version``: what this build is, in rkt's format."""

from __future__ import annotations

import argparse
import platform
from typing import Any

import trustd


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("version", parents=parents, help="print the version and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print_version()
    return 0


def print_version() -> None:
    """``rkt version`` and ``rkt --version``."""
    print(f"rkt Version: {trustd.__version__} (trustd)")
    print(f"appc Version: {trustd.APPC_VERSION}")
    print(f"Python Version: {platform.python_version()}")
    print(f"Python OS/Arch: {platform.system().lower()}/{platform.machine()}")

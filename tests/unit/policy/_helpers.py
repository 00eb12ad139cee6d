"""Shared helpers for the policy tests: policies from text, keys put in a real keystore."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tests.conftest import ConfigDirs, Keys
from trustd.shared.keystore import Keystore
from trustd.shared.policy import Policy, loads_policy

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
FIXTURES = Path(__file__).parent / "fixtures"

BASE = """
version = 1
[default]
measure = "off"
[default.require]
type = "signed"
[default.run]
selinux = "off"
"""


def policy(text: str, source: str = "test.toml") -> Policy:
    return loads_policy(text.encode(), source)


def with_base(extra: str) -> Policy:
    return policy(BASE + extra)


def trust(dirs: ConfigDirs, keys: Keys, fpr: str, prefix: str | None) -> str:
    """Put ``fpr``'s public key in the local keystore, as ``rkt trust`` lays it out.

    Written directly (not with Keystore.add) so that revoked and expired keys, which
    ``rkt trust`` refuses, can be present for the lint rules to find.
    """
    base = dirs.local / "trustedkeys"
    directory = base / "root.d" if prefix is None else base.joinpath("prefix.d", *prefix.split("/"))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / fpr.lower()).write_bytes(keys.public(fpr))
    return fpr.lower()


def keystore(dirs: ConfigDirs) -> Keystore:
    return Keystore(dirs.system, dirs.local)

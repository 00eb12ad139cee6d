"""trustd's shipped data, inside the package (issue #15): the default policy, the Docker-format
seccomp profiles and the stage1 descriptors live under ``trustd/shared/data/`` and travel with
every install (editable, wheel, ``make install``), so a measured descriptor digest is the same
bytes' digest however trustd was installed.

pip installs a package as files, never zipped, so the data is a directory beside this module.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def default_policy() -> Path:
    """The shipped default policy (what ``make install`` installs as the system one)."""
    return DATA / "policy" / "default.toml"


def seccomp_profiles_dir() -> Path:
    """The shipped Docker-format seccomp profiles, by file stem (``moby-default``, ...)."""
    return DATA / "policy" / "seccomp"


def stage1_descriptor(flavor: str) -> Path:
    """The descriptor of a stage1 flavor (``container``, ``fly``), whose digest is measured."""
    return DATA / "stage1" / f"{flavor}.json"

"""Global configuration: rkt's directory flags and the options every command shares."""

from __future__ import annotations

from pathlib import Path

from trustd.shared._dataclass import frozen
from trustd.shared.errors import UserError
from trustd.shared.insecure import Insecure

DEFAULT_SYSTEM_CONFIG = Path("/usr/lib/rkt")
DEFAULT_LOCAL_CONFIG = Path("/etc/rkt")
DEFAULT_DATA_DIR = Path("/var/lib/rkt")


def directory_flag(value: str) -> Path:
    """rkt's rule for directory flags: non-empty, made absolute."""
    if not value:
        raise UserError('"" is not a valid directory')
    return Path(value).absolute()


@frozen
class Dirs:
    system_config: Path = DEFAULT_SYSTEM_CONFIG
    local_config: Path = DEFAULT_LOCAL_CONFIG
    data: Path = DEFAULT_DATA_DIR
    user_config: Path | None = None


@frozen
class GlobalOptions:
    dirs: Dirs
    debug: bool = False
    insecure: Insecure = Insecure.NONE
    trust_keys_from_https: bool = False

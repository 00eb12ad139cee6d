"""Download settings in trustd's config dirs: ``fetch.d/*.json``, in rkt's file shape.

rkt has no such kind; trustd adds one beside ``auth.d``, ``paths.d`` and ``stage1.d``, read
the way rkt reads those (system, local, then user config directory, files in name order,
later ones overriding earlier ones field by field)::

    {"rktKind": "fetch", "rktVersion": "v1", "minRate": {"bytes": 65536, "seconds": 60}}

``minRate`` is the throughput floor of image downloads (ACIs and ``docker://`` layers,
ADR 0023): every full window of ``seconds`` must bring ``bytes``, else the download stops
as stalled. Our own file, so it is decoded strictly: an unknown field, a wrong type or a
value out of range is refused when the file is read, naming the file, the field and the fix.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trustd.shared._dataclass import frozen
from trustd.shared.errors import UserError

SUBDIR = "fetch.d"
KIND = "fetch"
#: ~1 KiB/s over each minute: far below any working link, far above a trickle (ADR 0023)
DEFAULT_MIN_RATE = (64 * 1024, 60.0)
MAX_FILE = 64 * 1024
_BYTES = (1, 1 << 30)  # at least a byte, at most 1 GiB per window
_SECONDS = (1, 3600)  # a window of a second to an hour (the idle clock is 60 s anyway)
_EXAMPLE = '"minRate": {"bytes": 65536, "seconds": 60}'


@frozen
class FetchSettings:
    min_rate: tuple[int, float] = DEFAULT_MIN_RATE
    # the file that set each field last (for `rkt config` and messages); empty: the default
    min_rate_from: str = ""

    def as_config(self) -> dict[str, Any] | None:
        """The entry ``rkt config`` prints (None when nothing is configured)."""
        if not self.min_rate_from:
            return None
        need, window = self.min_rate
        seconds: int | float = int(window) if window == int(window) else window
        return {
            "rktVersion": "v1",
            "rktKind": KIND,
            "minRate": {"bytes": need, "seconds": seconds},
        }


def _bad(path: Path, what: str, hint: str = f"write e.g. {_EXAMPLE} (the default)") -> UserError:
    return UserError(f"configuration file {path}: {what}", hint=hint)


def _number(
    path: Path, field: str, value: object, bounds: tuple[int, int], *, whole: bool
) -> float:
    low, high = bounds
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        kind = "an integer" if whole else "a number"
        raise _bad(path, f"minRate.{field} must be {kind} from {low} to {high}, not {value!r}")
    return value


def parse(path: Path, data: bytes) -> tuple[int, float] | None:
    """The ``minRate`` one ``fetch.d`` file sets (None: it sets none), or raise."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(path, f"not JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise _bad(path, "expected a JSON object")
    if doc.get("rktKind") != KIND:
        raise _bad(
            path,
            f"kind {doc.get('rktKind')!r} does not belong in {SUBDIR}",
            hint=f'write "rktKind": "{KIND}"',
        )
    if doc.get("rktVersion") != "v1":
        raise _bad(path, 'rktVersion must be "v1"', hint='write "rktVersion": "v1"')
    unknown = sorted(set(doc) - {"rktKind", "rktVersion", "minRate"})
    if unknown:
        raise _bad(path, f"unknown field {unknown[0]!r} (known: minRate)")
    if "minRate" not in doc:
        return None
    rate = doc["minRate"]
    if not isinstance(rate, dict) or set(rate) != {"bytes", "seconds"}:
        raise _bad(path, f"minRate must be an object with bytes and seconds, not {rate!r}")
    need = int(_number(path, "bytes", rate["bytes"], _BYTES, whole=True))
    window = float(_number(path, "seconds", rate["seconds"], _SECONDS, whole=False))
    return need, window


def _files(directory: Path) -> list[Path]:
    where = directory / SUBDIR
    try:
        return sorted(p for p in where.iterdir() if p.name.endswith(".json"))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except PermissionError as exc:
        raise UserError(
            f"cannot read {where}: permission denied",
            hint=f"make {where} readable (it holds no secret), or run as root",
        ) from exc


def load(config_dirs: Iterable[Path | None]) -> FetchSettings:
    """Every ``fetch.d`` file of ``config_dirs`` (system, local, user), later overriding."""
    settings = FetchSettings()
    for directory in config_dirs:
        if directory is None:
            continue
        for path in _files(directory):
            try:
                with path.open("rb") as f:
                    data = f.read(MAX_FILE + 1)
            except OSError as exc:
                what = f"cannot read it: {exc.strerror}"
                raise _bad(path, what, hint="check its permissions") from exc
            if len(data) > MAX_FILE:
                raise _bad(path, f"larger than {MAX_FILE} bytes")
            rate = parse(path, data)
            if rate is not None:
                settings = FetchSettings(rate, str(path))
    return settings

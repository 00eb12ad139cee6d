"""Where ``rkt trust`` reads keys from: a local file or an https (or allowed http) URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from trustd.shared._fsutil import read_capped
from trustd.shared.errors import TransportError, UserError
from trustd.shared.insecure import Insecure
from trustd.shared.verify import PublicKey, parse_public_keys

MAX_KEY_BYTES = 1 << 20


def _read_url(location: str, *, insecure: Insecure, allow_http: bool) -> bytes:
    from trustd.unprivileged.transport import KEY_LIMITS, fetch  # noqa: PLC0415 - network only when used

    scheme = urlsplit(location).scheme
    if scheme == "http" and not allow_http:
        raise UserError("--insecure-allow-http required for http URLs")
    mode = insecure | Insecure.HTTP if scheme == "http" else insecure & ~Insecure.HTTP
    response = fetch(location, limits=KEY_LIMITS, insecure=mode)
    if response.status != 200:
        raise TransportError(f"fetching key {location!r}: expected a 200 OK got {response.status}")
    return response.body


def _read_file(location: str) -> bytes:
    path = Path(location.removeprefix("file://"))
    try:
        return read_capped(path, MAX_KEY_BYTES)
    except FileNotFoundError as exc:
        raise UserError(f"key file {location!r} does not exist") from exc
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read key file {location!r}: {exc}") from exc


def load_keys(location: str, *, insecure: Insecure, allow_http: bool) -> list[PublicKey]:
    scheme = urlsplit(location).scheme
    if scheme in ("http", "https"):
        data = _read_url(location, insecure=insecure, allow_http=allow_http)
    elif scheme in ("", "file"):
        data = _read_file(location)
    else:
        raise UserError("only local files and http or https URLs supported")
    return parse_public_keys(data, source=repr(location))

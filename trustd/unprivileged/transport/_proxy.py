"""The proxy for a URL, from the environment, as curl and Python's requests read it.

* ``https_proxy`` / ``HTTPS_PROXY`` for https URLs, ``http_proxy`` / ``HTTP_PROXY`` for http,
  ``all_proxy`` / ``ALL_PROXY`` for either when the scheme's own is unset; the lower-case
  name wins when both are set (urllib and requests). An empty value means no proxy.
* Upper-case ``HTTP_PROXY`` is ignored when ``REQUEST_METHOD`` is set: in a CGI program a
  client's ``Proxy:`` header arrives as ``HTTP_PROXY`` ("httpoxy"; urllib and requests do the
  same, curl ignores upper-case HTTP_PROXY always).
* ``no_proxy`` / ``NO_PROXY``: a comma list; ``*`` alone bypasses every proxy; a name matches
  itself and its subdomains (a leading ``.`` is dropped, as curl does); an IP address or CIDR
  block matches addresses in it (requests and curl 7.86+); an entry may carry ``:port``.
  Matching ignores case. Loopback gets no special treatment: like curl and requests, only
  what ``no_proxy`` lists is reached directly.
* A proxy is ``http://[user:password@]host[:port]`` (port 1080 if missing, curl's default; a
  value without a scheme is read as http://, as both do). Credentials are sent as
  ``Proxy-Authorization: Basic``. https:// and socks proxies are refused with the reason.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from trustd.shared._dataclass import frozen
from trustd.shared.errors import UserError

_DEFAULT_PORT = 1080


@frozen
class Proxy:
    host: str
    port: int
    authorization: str | None  # the Proxy-Authorization header value, if credentials given
    variable: str  # where it came from, for messages

    @property
    def where(self) -> str:
        return f"proxy {self.host}:{self.port} (from {self.variable})"


def _lookup(env: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """(variable, value) for ``name``, lower case first; None when unset or empty."""
    for variable in (name.lower(), name.upper()):
        if variable == "HTTP_PROXY" and "REQUEST_METHOD" in env:
            continue  # httpoxy: a CGI client may set it through a Proxy: header
        if variable in env:
            value = env[variable].strip()
            return (variable, value) if value else None
    return None


def _parse(variable: str, value: str) -> Proxy:
    text = value if "://" in value else f"http://{value}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise UserError(f"{variable}={value!r} is not a proxy URL: {exc}") from None
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise UserError(
            f"{variable}={value!r}: only http:// proxies are supported",
            hint=f"set {variable} to http://HOST:PORT, or unset it",
        )
    auth = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return Proxy(parts.hostname, port or _DEFAULT_PORT, auth, variable)


def _entry_matches(entry: str, host: str, port: int) -> bool:
    name, _, entry_port = entry.rpartition(":") if _has_port(entry) else (entry, "", "")
    if entry_port and entry_port != str(port):
        return False
    name = name.strip("[]").lstrip(".").lower()
    if not name:
        return False
    try:
        network = ipaddress.ip_network(name, strict=False)
    except ValueError:
        return host == name or host.endswith("." + name)
    try:
        return ipaddress.ip_address(host) in network
    except ValueError:
        return False  # a name never matches an address entry


def _has_port(entry: str) -> bool:
    """``host:port`` or ``[v6]:port``; a bare IPv6 address has colons but no port."""
    if entry.startswith("["):
        return "]:" in entry
    return entry.count(":") == 1


def bypassed(host: str, port: int, env: Mapping[str, str]) -> bool:
    found = _lookup(env, "no_proxy")
    if found is None:
        return False
    entries = [e.strip() for e in found[1].split(",") if e.strip()]
    host = host.strip("[]").lower()
    return "*" in entries or any(_entry_matches(e, host, port) for e in entries)


def proxy_for(
    scheme: str, host: str, port: int, env: Mapping[str, str] | None = None
) -> Proxy | None:
    """The proxy to reach ``scheme://host:port`` through, or None for a direct connection."""
    env = os.environ if env is None else env
    found = _lookup(env, f"{scheme}_proxy") or _lookup(env, "all_proxy")
    if found is None or bypassed(host, port, env):
        return None
    return _parse(*found)

"""Pod networking vocabulary: rkt's ``--net``, ``--port``, ``--dns*``, ``--hosts-entry`` and
``--hostname`` values, parsed once and strictly (the CLI parses them for its messages; root
parses them again from the request, ADR 0010).

``--net`` (rkt Documentation/networking/overview.md): ``host``, ``none``, or a comma list of
CNI networks, each ``name[:K=V;K=V...]`` (the pairs become ``CNI_ARGS``). ``default`` and
``default-restricted`` are built in; ``all`` means every configured network. When a list names
networks but not ``default``, ``default-restricted`` is joined too (so the pod can reach the
host side, as in rkt).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from trustd.shared._dataclass import frozen

NetMode = Literal["host", "none", "cni"]
BUILTIN_NETWORKS = ("default", "default-restricted")
NETWORK_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_ARG_KEY = re.compile(r"[A-Za-z0-9_]{1,64}")
_ARG_VALUE = re.compile(r"[A-Za-z0-9_.:/,@+-]{0,256}")
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_DNS_OPT = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_PORT_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
MAX_NETWORKS = 8
MAX_ITEMS = 32


def _fail(what: str, value: str, fix: str) -> ValueError:
    return ValueError(f"{what} {value[:80]!r}: {fix}")


@frozen
class NetworkRef:
    """One network a pod joins, with the CNI_ARGS pairs given for it."""

    name: str
    args: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not NETWORK_NAME.fullmatch(self.name):
            raise _fail("network name", self.name, "use a-z, 0-9, '.', '_' and '-'")
        for key, value in self.args:
            if not _ARG_KEY.fullmatch(key) or not _ARG_VALUE.fullmatch(value):
                raise _fail(
                    f"--net={self.name} argument",
                    f"{key}={value}",
                    "give K=V with K in [A-Za-z0-9_]",
                )

    @property
    def cni_args(self) -> str:
        """CNI_ARGS as the spec spells it: ``K=V;K=V``."""
        return ";".join(f"{k}={v}" for k, v in self.args)


def _parse_one(item: str) -> NetworkRef:
    name, sep, rest = item.partition(":")
    args: list[tuple[str, str]] = []
    if sep:
        for pair in rest.split(";"):
            key, eq, value = pair.partition("=")
            if not eq:
                raise _fail(f"--net={name} argument", pair, "give K=V pairs separated by ';'")
            args.append((key, value))
    return NetworkRef(name, tuple(args))


def parse_net(value: str) -> tuple[NetMode, tuple[NetworkRef, ...]]:
    """rkt's ``--net`` value: the mode and, for CNI, the networks in join order."""
    value = value.strip()
    if value in ("host", "none"):
        return value, ()  # type: ignore[return-value]
    items = [v for v in value.split(",") if v] or ["default"]
    refs = [_parse_one(v) for v in items]
    names = [r.name for r in refs]
    for special in ("host", "none"):
        if special in names:
            raise _fail("--net", value, f"{special!r} cannot be combined with other networks")
    if len(set(names)) != len(names):
        raise _fail("--net", value, "every network can be joined once only")
    if "default" not in names and "default-restricted" not in names and "all" not in names:
        refs.append(NetworkRef("default-restricted"))
    if len(refs) > MAX_NETWORKS:
        raise _fail("--net", value, f"join at most {MAX_NETWORKS} networks")
    return "cni", tuple(refs)


def check_hostname(value: str) -> str:
    if not _HOSTNAME.fullmatch(value):
        raise _fail("hostname", value, "use a DNS name (letters, digits, '-' and dots)")
    return value


@frozen
class PortRequest:
    """``--port NAME:[HOSTIP:]HOSTPORT``: the image's port NAME forwarded from the host."""

    name: str
    host_port: int
    host_ip: str | None = None

    def __post_init__(self) -> None:
        if not _PORT_NAME.fullmatch(self.name):
            raise _fail("port name", self.name, "name a port of the image's manifest")
        if not 1 <= self.host_port <= 65535:
            raise _fail("host port", str(self.host_port), "use 1-65535")
        if self.host_ip is not None:
            ipaddress.IPv4Address(self.host_ip)  # ValueError names the address

    @classmethod
    def parse(cls, value: str) -> PortRequest:
        name, sep, rest = value.partition(":")
        ip, _, port = rest.rpartition(":")
        if not sep or not port.isdigit():
            raise _fail("--port", value, "give NAME:[HOSTIP:]HOSTPORT, e.g. http:8080")
        try:
            return cls(name, int(port), ip or None)
        except ValueError as exc:
            raise _fail("--port", value, str(exc)) from exc


_ZONE = re.compile(r"[A-Za-z0-9_.-]{1,15}")  # an IPv6 zone id: an interface name or index


def _ip_address(value: str) -> None:
    """``value`` is an IP address, an IPv6 zone id at most an interface's name: Python's
    ``ipaddress`` takes anything after ``%`` as the zone, newlines included, and these values
    become lines of the pod's ``/etc/resolv.conf`` and ``/etc/hosts`` (red team 3)."""
    parsed = ipaddress.ip_address(value)
    zone = getattr(parsed, "scope_id", None)
    if zone is not None and not _ZONE.fullmatch(zone):
        raise ValueError(f"{value!r}: an IPv6 zone id is an interface name or number")


def _check_dns(value: str) -> None:
    if value in ("host", "none"):
        return
    try:
        _ip_address(value)
    except ValueError:
        raise _fail("--dns", value, "give a name server's IP address, 'host' or 'none'") from None


def _hosts_pairs(entry: str) -> list[tuple[str, str]]:
    pairs = []
    for item in entry.split(","):
        ip, eq, host = item.partition("=")
        if not eq:
            raise _fail("--hosts-entry", item, "give IP=HOSTNAME, or 'host'")
        try:
            _ip_address(ip)
        except ValueError:
            raise _fail(
                "--hosts-entry", item, "the part before '=' must be an IP address"
            ) from None
        check_hostname(host)
        pairs.append((ip, host))
    return pairs


@frozen
class NetOptions:
    """The pod's network options, as ``rkt run`` and ``rkt run-prepared`` take them."""

    net: str = "default"
    ports: tuple[PortRequest, ...] = ()
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_opt: tuple[str, ...] = ()
    dns_domain: str | None = None
    hosts_entries: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        parse_net(self.net)
        for group in (self.ports, self.dns, self.dns_search, self.dns_opt, self.hosts_entries):
            if len(group) > MAX_ITEMS:
                raise ValueError(f"at most {MAX_ITEMS} of each network option")
        for dns in self.dns:
            _check_dns(dns)
        if len(self.dns) > 1 and {"host", "none"} & set(self.dns):
            raise _fail("--dns", ",".join(self.dns), "'host' and 'none' stand alone")
        for name in (*self.dns_search, *((self.dns_domain,) if self.dns_domain else ())):
            check_hostname(name)
        for opt in self.dns_opt:
            if not _DNS_OPT.fullmatch(opt):
                raise _fail("--dns-opt", opt, "give a resolv.conf option such as ndots:2")
        self.hosts()
        if self.ports and self.mode != "cni":
            raise _fail("--port", self.ports[0].name, "forwarding needs a CNI network (--net)")

    @property
    def mode(self) -> NetMode:
        return parse_net(self.net)[0]

    @property
    def networks(self) -> tuple[NetworkRef, ...]:
        return parse_net(self.net)[1]

    def hosts(self) -> tuple[bool, tuple[tuple[str, str], ...]]:
        """(use the host's /etc/hosts, the IP=name pairs to append to the defaults)."""
        if "host" in self.hosts_entries:
            if len(self.hosts_entries) > 1:
                raise _fail("--hosts-entry", "host", "'host' stands alone")
            return True, ()
        return False, tuple(p for e in self.hosts_entries for p in _hosts_pairs(e))

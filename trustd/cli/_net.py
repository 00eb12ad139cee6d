"""rkt's pod network flags, grouped: ``--net``, ``--port``, ``--dns``, ``--dns-search``,
``--dns-opt``, ``--dns-domain``, ``--hosts-entry`` (``--hostname`` stays with the pod flags).
``run`` takes all of them; ``prepare`` takes ``--port`` only; ``run-prepared`` all but
``--port`` (rkt's split). Values are parsed here for early messages and again by root."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from trustd.cli._grammar import no_opt_value
from trustd.shared.errors import UserError
from trustd.shared.net import NetOptions, PortRequest


def _port(value: str) -> PortRequest:
    try:
        return PortRequest.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _split(values: list[str]) -> tuple[str, ...]:
    return tuple(v for value in values for v in value.split(",") if v)


def add_net_flags(p: argparse.ArgumentParser, *, ports: bool, dns: bool) -> None:
    if dns:
        net = p.add_argument(
            "--net",
            default=None,
            metavar="NETS",
            help="default (ptp + NAT), default-restricted, none, host, or a comma list of "
            "net.d networks, each NAME[:K=V;...] (CNI_ARGS); --net alone is default",
        )
        no_opt_value(net, "default")  # rkt's NoOptDefVal: a value only after "="
        p.add_argument("--dns", action="append", default=[], help="name server IP, host or none")
        p.add_argument(
            "--dns-search", action="append", default=[], help="DNS search domain (resolv.conf)"
        )
        p.add_argument(
            "--dns-opt", action="append", default=[], help="DNS option, e.g. ndots:2 (resolv.conf)"
        )
        p.add_argument("--dns-domain", help="DNS local domain (resolv.conf)")
        p.add_argument("--hosts-entry", action="append", default=[], help="IP=HOSTNAME or host")
    if ports:
        p.add_argument(
            "--port",
            action="append",
            default=[],
            type=_port,
            metavar="NAME:[HOSTIP:]HOSTPORT",
            help="forward a port the image declares from the host",
        )


def net_options(args: argparse.Namespace) -> NetOptions | None:
    """The options given, or None when no network flag was (run-prepared: as prepared)."""
    given: dict[str, Any] = {}
    if getattr(args, "net", None) is not None:
        given["net"] = args.net
    for name in ("dns", "dns_search", "dns_opt", "hosts_entries"):
        flag = "hosts_entry" if name == "hosts_entries" else name
        values = getattr(args, flag, [])
        if values:
            given[name] = _split(values) if name != "hosts_entries" else tuple(values)
    if getattr(args, "dns_domain", None):
        given["dns_domain"] = args.dns_domain
    if getattr(args, "port", []):
        given["ports"] = tuple(args.port)
    if not given:
        return None
    try:
        return NetOptions(**given)
    except ValueError as exc:
        raise UserError(str(exc), hint="see rkt run --help for the network flags") from exc


NET_INFO = "net-info.json"  # beneath the pod directory


def pod_networks(read: Callable[[str], str | None]) -> list[dict[str, str]]:
    """The pod's networks (``netName``, ``ifName``, ``ip``) from its net-info.json (root
    writes it when the pod starts; rkt's name): what ``list --format=json`` shows. ``read``
    reads a small regular file beneath the pod directory (None when absent)."""
    try:
        text = read(NET_INFO)
    except OSError:
        return []
    return networks_of(text)


def networks_of(text: str | None) -> list[dict[str, str]]:
    """:func:`pod_networks` of net-info.json's text as read (None when absent)."""
    try:
        nets = json.loads(text) if text else []
    except ValueError:
        return []
    if not isinstance(nets, list):
        return []
    keys = ("netName", "ifName", "ip")
    return [{k: str(n.get(k, "")) for k in keys} for n in nets if isinstance(n, dict)]


def network_column(nets: list[dict[str, str]]) -> str:
    """rkt list's NETWORKS column and status's ``networks=``: ``name:ip4=ADDR,...``."""
    return ",".join(f"{n['netName']}:ip4={n['ip']}" for n in nets)

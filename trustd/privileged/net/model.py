"""What a pod plan records about its network: the exact configurations root will send to
the plugins (so what is measured and decided is what runs), the port forwards resolved
against the images' ports, and the DNS and hosts options."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, field

from trustd.shared._dataclass import frozen
from trustd.shared.net import NetOptions


@frozen
class NetPlan:
    name: str
    args: tuple[tuple[str, str], ...]
    ifname: str  # eth0, eth1, ... in join order
    config: str  # the configuration, canonical JSON (sorted keys, no spaces)
    source: str  # "built-in" or the net.d file


@frozen
class PortPlan:
    name: str
    protocol: str  # tcp | udp
    container_port: int
    host_port: int
    host_ip: str | None = None


@frozen
class PodNetPlan:
    """The pod's network as prepared (and replaced by ``run-prepared --net``)."""

    options: NetOptions = field(default_factory=lambda: NetOptions(net="none"))
    networks: tuple[NetPlan, ...] = ()
    ports: tuple[PortPlan, ...] = ()

    def digest(self) -> str:
        """One digest over everything that shapes the pod's network (measured, ADR 0019)."""
        body = json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()
        return "sha256-" + hashlib.sha256(body).hexdigest()

    def names(self) -> tuple[str, ...]:
        if self.options.mode != "cni":
            return (self.options.mode,)
        return tuple(n.name for n in self.networks)

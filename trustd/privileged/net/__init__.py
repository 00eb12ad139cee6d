"""Pod networking on the root side: CNI plugins, the pod's netns, /etc files (ADR 0019).

The public surface: :func:`resolve` and :func:`resolve_ports` (prepare), :func:`pod_network`
(run), :func:`detach` (stop/rm/gc), :func:`host_address` and :func:`addresses` (services
on the host side of the pod network, e.g. the metadata service), :func:`join` and
:func:`install_etc` (the stage1).
"""

from trustd.privileged.net._etc import install as install_etc
from trustd.privileged.net._netns import join
from trustd.privileged.net.model import NetPlan, PodNetPlan, PortPlan
from trustd.privileged.net.pod import (
    Attaching,
    addresses,
    attached,
    detach,
    host_address,
    pod_network,
    resolve,
    resolve_ports,
    sweep,
)

__all__ = [
    "Attaching",
    "NetPlan",
    "PodNetPlan",
    "PortPlan",
    "addresses",
    "attached",
    "detach",
    "host_address",
    "install_etc",
    "join",
    "pod_network",
    "resolve",
    "resolve_ports",
    "sweep",
]

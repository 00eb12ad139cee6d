"""``rkt metadata-service``: the appc metadata service as a host daemon (rkt's verb).

    rkt metadata-service [--listen-address=172.16.28.1] [--listen-port=18112]

As root: the root program binds the sockets and becomes the daemon as ``rkt-mds``. Started
by systemd (``rkt-metadata.socket``, ``User=rkt-mds``): the sockets arrive as ``LISTEN_FDS``
and the daemon runs on them directly. ``--mds-register`` pods register with it (ADR
0025).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from trustd.shared.errors import UserError

DEFAULT_PORT = 18112
# The host side of the default pod network (its gateway, ADR 0019), bound before any pod
# exists (IP_FREEBIND): pods on --net=default reach it, the host's other interfaces do not
# serve it (rkt listened on all of them; ADR 0025). 127.0.0.1 serves --net=host pods,
# 0.0.0.0 every network, as rkt did.
DEFAULT_ADDRESS = "172.16.28.1"


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "metadata-service",
        parents=parents,
        help="run the appc metadata service for --mds-register pods (host daemon)",
    )
    p.add_argument(
        "--listen-address",
        default=DEFAULT_ADDRESS,
        help="IP address to serve on (172.16.28.1, the default network's host side)",
    )
    p.add_argument("--listen-port", type=int, default=DEFAULT_PORT, help="TCP port (18112)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        if not os.environ.get("LISTEN_FDS"):
            raise UserError(
                "needs root to bind its sockets, or systemd socket activation (LISTEN_FDS)",
                hint="run it as root (it drops to rkt-mds); or systemctl start rkt-metadata.socket",
            )
        from trustd.shared.isolation import set_no_new_privs  # noqa: PLC0415

        set_no_new_privs()
        env = {k: v for k, v in os.environ.items() if k.startswith("LISTEN_")}
        env["PATH"] = "/usr/bin:/bin"
        argv = [sys.executable, "-I", "-m", "trustd.unprivileged.mds", "--daemon"]
        os.execve(sys.executable, argv, env)  # noqa: S606 - same pid: LISTEN_PID stays ours
    from trustd.cli._handoff import exec_root  # noqa: PLC0415
    from trustd.shared.request import MetadataServiceStart  # noqa: PLC0415

    try:
        request = MetadataServiceStart("metadata-service", args.listen_address, args.listen_port)
    except ValueError as exc:
        raise UserError(str(exc), hint="e.g. --listen-address=172.16.28.1") from exc
    exec_root(args.options, "metadata-service", request)

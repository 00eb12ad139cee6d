"""Privilege separation: root's network and archive work runs as an unprivileged identity."""

from trustd.unprivileged.privsep.drop import (
    Identity,
    fetch_identity,
    require_reachable,
    run_as,
)

__all__ = ["Identity", "fetch_identity", "require_reachable", "run_as"]

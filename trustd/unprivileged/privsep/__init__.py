"""Privilege separation: root's network and archive work runs as an unprivileged identity."""

from trustd.unprivileged.privsep.drop import (
    Identity,
    drop_for_good,
    fetch_identity,
    require_reachable,
    run_as,
)

__all__ = ["Identity", "drop_for_good", "fetch_identity", "require_reachable", "run_as"]

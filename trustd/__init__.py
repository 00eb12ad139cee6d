"""trustd: a security-minded, rkt-compatible container engine.

The package is cut by domain concept (keystore, verify, discovery, cli, ...); see
docs/adr/ for the decisions behind the layout and docs/threat-model.md for the boundaries.
"""

__version__ = "0.1.0"
APPC_VERSION = "0.8.11"

"""The root-only executor: prepares and runs pods of images named by store key (ADR 0006).

It never imports the fetch side, discovery, transport, the CLI or an HTTP library (an
import-linter contract in pyproject.toml enforces it).
"""

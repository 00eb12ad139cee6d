"""What runs as root: the executor program and everything it calls.

Nothing under this folder may import :mod:`trustd.unprivileged` or any network module
(``ssl``, ``http``, ``urllib``, ``socket`` clients); the import-linter contracts in
``pyproject.toml`` and ``tests/unit/test_layering.py`` enforce it. Root enters this side
through its own entry point (:mod:`trustd.privileged.main`), which reads one typed,
size-capped request and believes nothing group ``rkt`` can write (ADR 0010).
"""

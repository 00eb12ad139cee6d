"""What runs unprivileged: fetch, discovery, transport, Docker images and the privsep child.

This side talks to the network and parses what it fetched. When root asks for a fetch, the
work runs in a child that dropped to ``rkt-fetch``:``rkt`` (:mod:`.privsep`); members of
group ``rkt`` run it directly. What it writes (the shared store under ``<dir>/cas``) is
untrusted by the privileged side (ADR 0005, ADR 0010).
"""

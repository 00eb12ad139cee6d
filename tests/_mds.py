"""A pod's request to the metadata service over real TCP, for the unit and integration tests.

A plain module rather than a conftest so that any test package can import it.
"""

from __future__ import annotations

import socket


def pod_get(port: int, token: str, source: str, timeout: float = 60) -> bytes:
    """The whole HTTP/1.0 answer to ``GET /TOKEN/acMetadata/v1/pod/uuid`` on 127.0.0.1:``port``,
    sent from ``source`` (a generous timeout: only a server that never answers fails it)."""
    with socket.create_connection(("127.0.0.1", port), timeout, (source, 0)) as sock:
        sock.sendall(f"GET /{token}/acMetadata/v1/pod/uuid HTTP/1.0\r\n\r\n".encode())
        out = b""
        while chunk := sock.recv(4096):
            out += chunk
    return out

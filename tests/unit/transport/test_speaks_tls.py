"""The TLS probe a plain-http-allowed registry ping runs before loading the CA store."""

from __future__ import annotations

import socket
import threading

from tests._https import LocalServer
from trustd.unprivileged.transport import Limits, speaks_tls

FAST = Limits(max_bytes=1024, connect_timeout=5, total_timeout=5)


def test_a_tls_server_is_found_even_though_the_probe_trusts_no_ca(
    https_server: LocalServer,
) -> None:
    assert speaks_tls("127.0.0.1", https_server.port, FAST)


def test_a_plain_http_server_is_not_tls(http_server: LocalServer) -> None:
    assert not speaks_tls("127.0.0.1", http_server.port, FAST)


def test_a_closed_port_is_not_tls() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        assert not speaks_tls("127.0.0.1", port, FAST)


def test_the_probe_sends_nothing_past_the_client_hello(https_server: LocalServer) -> None:
    """The handshake cannot complete, so no request reaches the server."""
    assert speaks_tls("127.0.0.1", https_server.port, FAST)
    assert https_server.recorded == []


def test_a_server_that_trickles_its_handshake_is_given_up() -> None:
    """One byte every 0.2 s never trips a per-read timeout; CPython bounds the whole
    handshake by the socket's timeout (connect_timeout), so the probe ends (and the caller
    tries http, as after a failed https request)."""
    stop = threading.Event()
    record = b"\x16\x03\x03\x40\x00"  # a 16 KiB handshake record, TLS 1.2; its body trickles
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def trickle() -> None:
            conn, _ = listener.accept()
            with conn:
                sent = 0
                while not stop.wait(0.2):
                    try:
                        conn.sendall(record[sent : sent + 1] or b"\x00")
                    except OSError:
                        return
                    sent += 1

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        slow = Limits(max_bytes=1024, connect_timeout=1, total_timeout=5)
        try:
            assert not speaks_tls("127.0.0.1", listener.getsockname()[1], slow)
        finally:
            stop.set()
            thread.join()

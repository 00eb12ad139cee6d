"""The metadata daemon's connection bounds (red team 4): counted outcomes, never times.

A real BoundedServer on loopback with real TCP connections: idle ones hold their slots until
the limits refuse the rest with a 503; a registered address still gets its answer; an idle
connection is ended by the reaper; a request too big is cut at the cap.
"""

from __future__ import annotations

import secrets
import select
import socket
import threading
from collections.abc import Iterator

import pytest

from tests._mds import pod_get
from trustd.unprivileged.mds import PodMetadata, _admit
from trustd.unprivileged.mds.server import BoundedServer, bounded

POD_ADDRESS = "127.0.0.2"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[BoundedServer, PodMetadata]]:
    """The server, with idle connections held for the test's length (no deadline or read
    timeout falls inside it, so every count is exact whatever the machine's load)."""
    monkeypatch.setattr(_admit, "DEADLINE_SECONDS", 3600.0)
    monkeypatch.setattr(_admit, "READ_TIMEOUT", 3600.0)
    meta = PodMetadata.new("1234-uuid", {"apps": []}, {}, secrets.token_bytes(64))

    def lookup(token: str, client: str) -> PodMetadata | None:
        ok = secrets.compare_digest(token, meta.token) and client == POD_ADDRESS
        return meta if ok else None

    httpd = bounded(("127.0.0.1", 0), lookup, lambda a: a == POD_ADDRESS)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, meta
    httpd.shutdown()
    httpd.server_close()


def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    sock.sendall(b"GET /")  # a request line begun, never finished
    return sock


def _refused(httpd: BoundedServer, flood: list[socket.socket]) -> int:
    """How many of ``flood`` the server answered 503 (or reset) and closed, once the client
    side has seen as many as the server counts refused; an admitted idle connection gets
    nothing until its deadline."""
    seen: set[socket.socket] = set()
    for _ in range(200):
        readable, _, _ = select.select([s for s in flood if s not in seen], [], [], 0.05)
        for sock in readable:
            try:
                data = sock.recv(4096)
            except ConnectionResetError:
                data = b""
            assert data.startswith(b"HTTP/1.0 503") or data == b"", data
            seen.add(sock)
        if len(seen) >= httpd.admission.refused:
            break
    return len(seen)


def _wait_admitted(httpd: BoundedServer, count: int) -> None:
    for _ in range(600):
        if httpd.admission.admitted + httpd.admission.refused >= count:
            return
        threading.Event().wait(0.05)
    raise AssertionError("the server did not take the connections")


def test_one_address_holds_at_most_its_share_and_a_pod_still_gets_its_answer(
    server: tuple[BoundedServer, PodMetadata],
) -> None:
    httpd, meta = server
    port = httpd.server_address[1]
    flood = [_connect(port) for _ in range(_admit.PER_ADDRESS * 3)]
    try:
        _wait_admitted(httpd, len(flood))
        refused = _refused(httpd, flood)
        assert refused == len(flood) - _admit.PER_ADDRESS
        answer = pod_get(port, meta.token, POD_ADDRESS)
        assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"1234-uuid")
    finally:
        for s in flood:
            s.close()


def test_unregistered_addresses_share_a_part_and_registered_pods_keep_the_rest(
    server: tuple[BoundedServer, PodMetadata],
) -> None:
    httpd, meta = server
    port = httpd.server_address[1]
    sources = [f"127.0.1.{i}" for i in range(1, 11)]  # 10 addresses x PER_ADDRESS each
    flood = [_connect(port, src) for src in sources for _ in range(_admit.PER_ADDRESS)]
    try:
        _wait_admitted(httpd, len(flood))
        held = len(flood) - _refused(httpd, flood)
        assert held == _admit.UNREGISTERED_SHARE
        answers = [pod_get(port, meta.token, POD_ADDRESS) for _ in range(3)]
        assert all(a.startswith(b"HTTP/1.0 200") for a in answers), answers
    finally:
        for s in flood:
            s.close()


def test_a_connection_that_trickles_is_ended_at_its_deadline(
    server: tuple[BoundedServer, PodMetadata], monkeypatch: pytest.MonkeyPatch
) -> None:
    httpd, _ = server
    monkeypatch.setattr(_admit, "DEADLINE_SECONDS", 1.0)
    sock = _connect(httpd.server_address[1])
    sock.settimeout(0.2)
    ended = False
    for _ in range(300):  # a byte at a time, each well within the per-operation timeout
        try:
            sock.sendall(b"a")
            if sock.recv(1) == b"":
                ended = True
                break
        except TimeoutError:
            continue
        except OSError:
            ended = True
            break
    sock.close()
    assert ended
    for _ in range(100):
        if httpd.admission.open_count() == 0:
            break
        threading.Event().wait(0.05)
    assert httpd.admission.open_count() == 0


def test_request_headers_are_cut_at_the_cap(server: tuple[BoundedServer, PodMetadata]) -> None:
    httpd, meta = server
    port = httpd.server_address[1]
    big = b"X-Pad: " + b"a" * 1000 + b"\r\n"
    head = f"GET /{meta.token}/acMetadata/v1/pod/uuid HTTP/1.0\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), 30, (POD_ADDRESS, 0)) as sock:
        sock.sendall(head + big * (_admit.MAX_HEAD // len(big) + 2) + b"\r\n")
        out = b""
        try:
            while chunk := sock.recv(4096):
                out += chunk
        except ConnectionResetError:
            pass
    assert out.startswith(b"HTTP/1.0 431"), out[:200]


def test_the_cap_reader_counts_a_declared_body_only() -> None:
    import io  # noqa: PLC0415

    reader = _admit.CappedReader(io.BytesIO(b"line\r\n" + b"b" * 100), left=6)
    assert reader.readline(65537) == b"line\r\n"
    with pytest.raises(_admit.TooLarge):
        reader.readline(65537)
    assert reader.read(100) == b""
    reader.allow(10)
    assert reader.read(100) == b"b" * 10


def test_registered_pods_together_stop_at_the_overall_cap() -> None:
    """Every registered address at its own limit: the overall cap refuses the next one."""
    pods = [f"10.0.0.{i}" for i in range(_admit.MAX_CONNECTIONS // _admit.PER_ADDRESS + 1)]
    admission = _admit.Admission(lambda address: address in pods)
    pairs = [socket.socketpair() for _ in range(len(pods) * _admit.PER_ADDRESS)]
    try:
        outcomes = [
            admission.admit(a, pods[i // _admit.PER_ADDRESS]) for i, (a, _) in enumerate(pairs)
        ]
        assert outcomes.count(True) == _admit.MAX_CONNECTIONS
        assert admission.refused == len(pairs) - _admit.MAX_CONNECTIONS
        admission.release(pairs[0][0])
        assert admission.admit(pairs[-1][0], pods[-1])  # a slot freed is a slot taken
    finally:
        for a, b in pairs:
            a.close()
            b.close()

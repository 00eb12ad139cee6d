"""The host daemon's pieces without root: sd_listen_fds semantics, the registry's rules."""

from __future__ import annotations

import base64
import json
import os
import socket

import pytest

from trustd.unprivileged.mds.daemon import (
    ActivationError,
    Registry,
    _answer,
    activated_sockets,
    listen_fds,
)

UUID = "6a2f8f8e-6c36-4b2e-9d1f-0b8c3f2a9e10"


def _pod(**over: object) -> dict[str, object]:
    manifest = base64.b64encode(json.dumps({"name": "example.com/x"}).encode()).decode()
    doc: dict[str, object] = {
        "uuid": UUID,
        "ip": "172.16.28.5",
        "pod_manifest": {"apps": []},
        "apps": {"x": {"manifest": manifest, "id": "sha512-" + "0" * 128}},
    }
    return {**doc, **over}


@pytest.mark.parametrize(
    ("env", "fds"),
    [
        ({}, []),
        ({"LISTEN_PID": "PID", "LISTEN_FDS": "2"}, [3, 4]),
        ({"LISTEN_PID": "1", "LISTEN_FDS": "2"}, []),  # another process's
        ({"LISTEN_PID": "PID"}, []),
    ],
)
def test_listen_fds_is_sd_listen_fds(env: dict[str, str], fds: list[int]) -> None:
    environ = {k: v.replace("PID", str(os.getpid())) for k, v in env.items()}
    environ["LISTEN_FDNAMES"] = "register:http"
    assert listen_fds(environ) == fds
    assert not {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} & set(environ)  # unset for children


def test_a_bad_count_is_refused() -> None:
    with pytest.raises(ActivationError, match="not a number"):
        listen_fds({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "two"})


def test_activation_needs_both_sockets() -> None:
    a, b = socket.socketpair()
    b.close()
    with pytest.raises(ActivationError, match="needs two sockets"):
        activated_sockets([os.dup(a.fileno())])
    a.close()


def test_a_token_names_its_pod_from_its_address_only() -> None:
    registry = Registry()
    token = registry.register(_pod())
    assert len(token) >= 43  # 256 bits, base64url
    meta = registry.lookup(token, "172.16.28.5")
    assert meta is not None and meta.uuid == UUID
    assert registry.lookup(token, "::ffff:172.16.28.5") is meta
    assert registry.lookup(token, "127.0.0.1") is None
    assert registry.lookup("x" * len(token), "172.16.28.5") is None
    again = registry.register(_pod())  # registering again gives a new token; the old is void
    assert again != token and registry.lookup(token, "172.16.28.5") is None
    registry.unregister(UUID)
    assert registry.lookup(again, "172.16.28.5") is None


def test_pods_sign_as_themselves_and_verify_each_other() -> None:
    registry = Registry()
    a = registry.lookup(registry.register(_pod()), "172.16.28.5")
    other = "0d4c6a4e-1111-4b2e-9d1f-0b8c3f2a9e10"
    b = registry.lookup(registry.register(_pod(uuid=other, ip="172.16.28.6")), "172.16.28.6")
    assert a is not None and b is not None
    assert a.sign(b"hi") == b.sign(b"hi", UUID) != b.sign(b"hi")


@pytest.mark.parametrize(
    ("doc", "error"),
    [
        ({"register": _pod(uuid="../x")}, ValueError),
        ({"register": _pod(ip="not-an-ip")}, OSError),
        ({"register": _pod(apps=[])}, TypeError),
        ({"register": _pod(uuid=7)}, TypeError),
        ({"register": {"uuid": UUID}}, KeyError),
        ({"list": {}}, ValueError),
    ],
)
def test_bad_registrations_are_refused(doc: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        _answer(Registry(), doc, ("127.0.0.1", 18112))


def test_an_address_is_registered_while_any_pod_has_it() -> None:
    registry = Registry()
    other = "0d4c6a4e-1111-4b2e-9d1f-0b8c3f2a9e10"
    registry.register(_pod())
    registry.register(_pod(uuid=other))  # two pods on one address (one was left behind)
    assert registry.has_address("172.16.28.5") and registry.has_address("::ffff:172.16.28.5")
    assert not registry.has_address("172.16.28.50") and not registry.has_address("::ffff:")
    registry.unregister(UUID)
    assert registry.has_address("172.16.28.5")
    registry.register(_pod(uuid=other, ip="172.16.28.6"))  # registered again elsewhere
    assert not registry.has_address("172.16.28.5") and registry.has_address("172.16.28.6")
    registry.unregister(other)
    registry.unregister(other)  # twice is harmless
    assert not registry.has_address("172.16.28.6") and not registry.addresses

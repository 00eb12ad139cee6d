"""Fetching ACIs over real HTTPS (a trustme-certified server on 127.0.0.1).

The workflow is called in-process (no root, no privilege drop; the CLI's root path is in
tests/integration). Covers the signature-first order, rkt's 202 deferral, the HTTP cache,
resumed downloads, a killed fetch, a stalled server and the size cap.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests._aci import build_aci
from tests._https import LocalServer, reply, stall
from tests.conftest import ConfigDirs, Keys
from trustd.shared.errors import TransportError, TrustdError, UntrustedSignerError
from trustd.shared.insecure import Insecure
from trustd.shared.keystore import Keystore
from trustd.shared.policy import load_effective
from trustd.shared.store import ImageStore
from trustd.shared.verify import parse_public_keys
from trustd.unprivileged.fetch import (
    FetchContext,
    FetchRequest,
    fetch_image,
    parse_image_ref,
    remote,
)
from trustd.unprivileged.transport import Limits

NAME = "example.com/remote"


@pytest.fixture
def image(tmp_path: Path, keys: Keys, config_dirs: ConfigDirs) -> tuple[bytes, bytes]:
    aci = build_aci(tmp_path / "r.aci", NAME, files={"bin/hello": os.urandom(200_000)})
    sig = keys.gpg.sign(keys.good, aci, tmp_path / "r.aci.asc")
    Keystore(config_dirs.system, config_dirs.local).add(
        parse_public_keys(keys.public(keys.good), source="k")[0], None
    )
    return aci.read_bytes(), sig.read_bytes()


def ctx(dirs: ConfigDirs, policy: str = "update") -> FetchContext:
    return FetchContext(
        ImageStore.open(dirs.data, create=True),
        Keystore(dirs.system, dirs.local),
        Insecure.NONE,
        load_effective(dirs.system, dirs.local),
        pull_policy=policy,
    )


def get(dirs: ConfigDirs, url: str, policy: str = "update") -> str:
    return fetch_image(FetchRequest(parse_image_ref(url)), ctx(dirs, policy)).key


def serve_file(body: bytes, etag: str = '"v1"', max_age: int | None = None) -> Any:
    """200 with ETag (and max-age), 304 on a matching If-None-Match, 206 for a Range."""

    def handle(req: Any) -> None:
        extra = {"ETag": etag}
        if max_age is not None:
            extra["Cache-Control"] = f"max-age={max_age}"
        if req.headers.get("If-None-Match") == etag:
            reply(b"", status=304, headers=extra)(req)
        elif (rng := req.headers.get("Range")) and req.headers.get("If-Range") == etag:
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            extra["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
            reply(body[start:], status=206, headers=extra)(req)
        else:
            reply(body, headers=extra)(req)

    return handle


def paths(srv: LocalServer) -> list[str]:
    return [r.path for r in srv.recorded]


def test_https_fetch_verifies_and_stores(
    https_server: LocalServer, image: tuple[bytes, bytes], config_dirs: ConfigDirs
) -> None:
    https_server.routes["/r.aci"] = serve_file(image[0])
    https_server.routes["/r.aci.asc"] = reply(image[1])
    key = get(config_dirs, https_server.url("/r.aci"))
    (record,) = ImageStore.open(config_dirs.data).images()
    assert record.key == key and record.source == https_server.url("/r.aci")
    assert paths(https_server) == ["/r.aci.asc", "/r.aci"]  # signature first


def test_deferred_signature_is_fetched_after_the_image(
    https_server: LocalServer, image: tuple[bytes, bytes], config_dirs: ConfigDirs
) -> None:
    answers = iter([reply(b"", status=202), reply(image[1])])
    https_server.routes["/r.aci"] = serve_file(image[0])
    https_server.routes["/r.aci.asc"] = lambda req: next(answers)(req)  # noqa: PLW0108 - lazily
    get(config_dirs, https_server.url("/r.aci"))
    assert paths(https_server) == ["/r.aci.asc", "/r.aci", "/r.aci.asc"]


def test_signature_deferred_twice_is_an_error(
    https_server: LocalServer, image: tuple[bytes, bytes], config_dirs: ConfigDirs
) -> None:
    https_server.routes["/r.aci"] = serve_file(image[0])
    https_server.routes["/r.aci.asc"] = reply(b"", status=202)
    with pytest.raises(TransportError, match="defer the download again"):
        get(config_dirs, https_server.url("/r.aci"))
    assert ImageStore.open(config_dirs.data).images() == []


def test_unknown_signer_is_refused_before_the_image_is_downloaded(
    https_server: LocalServer,
    image: tuple[bytes, bytes],
    config_dirs: ConfigDirs,
    keys: Keys,
    tmp_path: Path,
) -> None:
    other = tmp_path / "o.asc"
    keys.gpg.sign(keys.rsa, tmp_path / "r.aci", other)
    https_server.routes["/example.com/remote.aci.asc"] = reply(other.read_bytes())
    https_server.routes["/example.com/remote.aci"] = serve_file(image[0])
    ref = parse_image_ref(NAME)
    c = ctx(config_dirs)
    c.keystore.remove(keys.good, None)  # nothing trusted for the name
    with pytest.raises(UntrustedSignerError, match="not trusted"):
        remote.fetch_url(
            https_server.url("/example.com/remote.aci"),
            https_server.url("/example.com/remote.aci.asc"),
            c,
            ref=ref,
        )
    assert paths(https_server) == ["/example.com/remote.aci.asc"]


def test_etag_revalidation_and_max_age(
    https_server: LocalServer, image: tuple[bytes, bytes], config_dirs: ConfigDirs
) -> None:
    https_server.routes["/r.aci"] = serve_file(image[0])
    https_server.routes["/r.aci.asc"] = reply(image[1])
    first = get(config_dirs, https_server.url("/r.aci"))
    assert get(config_dirs, https_server.url("/r.aci")) == first
    revalidation = https_server.recorded[-1]
    assert revalidation.headers.get("if-none-match") == '"v1"'
    https_server.routes["/m.aci"] = serve_file(image[0], etag='"m"', max_age=3600)
    https_server.routes["/m.aci.asc"] = reply(image[1])
    get(config_dirs, https_server.url("/m.aci"))
    before = len(https_server.recorded)
    get(config_dirs, https_server.url("/m.aci"))
    assert len(https_server.recorded) == before  # fresh: no request at all
    assert get(config_dirs, https_server.url("/r.aci"), policy="new") == first


def test_an_interrupted_download_resumes_with_range(
    https_server: LocalServer, image: tuple[bytes, bytes], config_dirs: ConfigDirs
) -> None:
    import hashlib  # noqa: PLC0415

    url = https_server.url("/r.aci")
    tmp = ImageStore.open(config_dirs.data, create=True).layout.tmp
    partial = tmp / f"partial-{hashlib.sha256(url.encode()).hexdigest()[:40]}"
    partial.write_bytes(image[0][:50_000])
    (tmp / (partial.name + ".etag")).write_text('"v1"')
    https_server.routes["/r.aci"] = serve_file(image[0])
    https_server.routes["/r.aci.asc"] = reply(image[1])
    get(config_dirs, url)
    ranged = next(r for r in https_server.recorded if r.path == "/r.aci")
    assert ranged.headers["range"] == "bytes=50000-"
    assert not partial.exists()
    assert len(ImageStore.open(config_dirs.data).images()) == 1


def _fetch_in_child(dirs: ConfigDirs, url: str, cert: str) -> None:
    os.environ["SSL_CERT_FILE"] = cert
    get(dirs, url)


def test_sigkill_mid_download_then_a_clean_refetch(
    https_server: LocalServer, image: tuple[bytes, bytes], config_dirs: ConfigDirs
) -> None:
    body = image[0]

    def slow(req: Any) -> None:
        req.send_response(200)
        req.send_header("Content-Length", str(len(body)))
        req.send_header("ETag", '"v1"')
        req.end_headers()
        req.wfile.write(body[:60_000])
        req.wfile.flush()
        req.server.owner.stop.wait(30)

    https_server.routes["/r.aci"] = slow
    https_server.routes["/r.aci.asc"] = reply(image[1])
    ImageStore.open(config_dirs.data, create=True)
    child = multiprocessing.get_context("fork").Process(
        target=_fetch_in_child,
        args=(config_dirs, https_server.url("/r.aci"), os.environ["SSL_CERT_FILE"]),
    )
    child.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(
        r.path == "/r.aci" for r in https_server.recorded
    ):
        time.sleep(0.05)
    time.sleep(0.3)
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    assert ImageStore.open(config_dirs.data).images() == []  # nothing visible
    https_server.routes["/r.aci"] = serve_file(body)
    get(config_dirs, https_server.url("/r.aci"))
    assert len(ImageStore.open(config_dirs.data).images()) == 1


def test_a_stalled_server_times_out_cleanly(
    https_server: LocalServer,
    image: tuple[bytes, bytes],
    config_dirs: ConfigDirs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(remote, "IMAGE_LIMITS", Limits(10**9, 2, 3, idle_timeout=0.5))
    https_server.routes["/r.aci.asc"] = reply(image[1])
    https_server.routes["/r.aci"] = stall()
    with pytest.raises(TransportError, match=r"timed out after 0.5 s with no data"):
        get(config_dirs, https_server.url("/r.aci"))
    assert ImageStore.open(config_dirs.data).images() == []


def test_an_image_over_the_size_cap_is_refused(
    https_server: LocalServer,
    image: tuple[bytes, bytes],
    config_dirs: ConfigDirs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(remote, "IMAGE_LIMITS", Limits(1000, 2, 5))
    https_server.routes["/r.aci.asc"] = reply(image[1])
    https_server.routes["/r.aci"] = serve_file(image[0])
    with pytest.raises(TrustdError, match="cap"):
        get(config_dirs, https_server.url("/r.aci"))
    assert ImageStore.open(config_dirs.data).images() == []

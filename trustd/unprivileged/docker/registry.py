"""A Docker Registry HTTP API v2 client on trustd's bounded transport.

``/v2/`` is pinged first: over https, or (with ``--insecure-options=http``) over plain http
when https fails, as rkt did. A 401 with ``WWW-Authenticate: Bearer realm=…,service=…`` is
answered with a token from the realm (scope ``repository:NAME:pull``), asked with the
``dockerAuth`` credentials when there are some; ``Basic`` challenges get the credentials
directly. Credentials only ever travel over https: a plain-http registry or realm never sees
them. A token realm gets them only when it is https and on the registry's own host (any
port), or when auth.d configures credentials for the realm's own ``host[:port]`` (then those
are sent): a registry cannot send someone else's password to a host of its choosing.
Every manifest and blob is hashed while it streams and refused on a digest mismatch;
manifests are capped at 4 MiB, blobs at the size their descriptor announced, which itself
may not pass the blob cap (16 GiB); free space in ``cas/tmp`` is checked before and during
each download, keeping ``reserve`` bytes free.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Callable
from typing import BinaryIO
from urllib.parse import urlencode, urlsplit

from trustd.shared._dataclass import frozen
from trustd.shared.docker.documents import INDEX_TYPES, MANIFEST_TYPES, MAX_DOCUMENT
from trustd.shared.errors import DISK_FULL, RemoteLiedError, TransportError, UserError
from trustd.shared.insecure import Insecure
from trustd.unprivileged.docker._space import SpaceWatch, disk_full, need_space
from trustd.unprivileged.transport import IMAGE_LIMITS, Limits, Response, fetch, speaks_tls
from trustd.unprivileged.transport.progress import Progress

Credentials = Callable[[str], tuple[str, str] | None]
_CHALLENGE = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')
_ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))


SMALL_LIMITS = Limits(max_bytes=MAX_DOCUMENT, connect_timeout=30, total_timeout=120)


@frozen
class RegistryLimits:
    """Caps and clocks for registry calls; tests pass short ones."""

    small: Limits = SMALL_LIMITS
    blob: Limits = IMAGE_LIMITS  # max_bytes caps every layer, whatever its descriptor says
    # bytes a download leaves free where cas/tmp lives (None: 256 MiB, or 1/20 of a small disk)
    reserve: int | None = None


def _hasher(digest: str) -> hashlib._Hash:
    algo = digest.partition(":")[0]
    if algo not in ("sha256", "sha512"):
        raise RemoteLiedError(
            f"digest {digest!r} uses {algo!r}; only sha256 and sha512 are allowed"
        )
    return hashlib.new(algo)


def digest_mismatch(what: str, wanted: str, got: str) -> RemoteLiedError:
    return RemoteLiedError(
        f"{what}: digest mismatch: expected {wanted}, got {got}",
        hint="the registry (or something between it and you) served different bytes than "
        "the manifest names; nothing was stored",
    )


class _BlobSink:
    """Writes a blob to a file while hashing it; a 206 resumes, anything else restarts.

    More bytes than the descriptor's ``size`` is a lie (RemoteLiedError, the file emptied);
    so is a disk that fills up (LocalStateError), never a partial to resume.
    """

    def __init__(
        self,
        f: BinaryIO,
        digest: str,
        offset: int,
        progress: Progress | None,
        *,
        size: int | None = None,
        watch: SpaceWatch | None = None,
    ) -> None:
        self.f, self.digest, self.offset, self.progress = f, digest, offset, progress
        self.size, self.watch = size, watch
        self.total: int | None = None
        self.hash = _hasher(digest)
        f.seek(0)
        f.truncate(offset)
        while chunk := f.read(1 << 20):
            self.hash.update(chunk)

    def begin(self, status: int, length: int | None) -> None:
        if status != 206:
            self.f.seek(0)
            self.f.truncate()
            self.hash = _hasher(self.digest)
            self.offset = 0
            if self.progress is not None:
                self.progress.done = 0
        self.total = None if length is None else length + self.offset
        if self.size is not None and self.total is not None and self.total > self.size:
            raise self._too_long(f"announces {self.total} bytes")

    def _too_long(self, what: str) -> RemoteLiedError:
        return RemoteLiedError(
            f"blob {self.digest}: the registry {what}, more than the {self.size} bytes its "
            "descriptor declares",
            hint="the registry is misconfigured or hostile; nothing was stored",
        )

    def write(self, chunk: bytes) -> None:
        if self.size is not None and self.f.tell() + len(chunk) > self.size:
            raise self._too_long("sent more")
        try:
            self.f.write(chunk)
        except OSError as exc:  # the transport would call this a network failure
            if exc.errno in DISK_FULL:
                where = self.watch.where if self.watch is not None else "cas/tmp"
                raise disk_full(f"blob {self.digest}", where, exc) from exc
            raise
        if self.watch is not None:
            self.watch.wrote(len(chunk))
        self.hash.update(chunk)
        if self.progress is not None:
            self.progress.update(chunk, self.total)

    def result(self) -> str:
        return f"{self.digest.partition(':')[0]}:{self.hash.hexdigest()}"


class Registry:
    """One repository on one registry, for one fetch."""

    def __init__(
        self,
        host: str,
        repository: str,
        *,
        insecure: Insecure,
        credentials: Credentials,
        limits: RegistryLimits | None = None,
    ) -> None:
        self.host, self.repository = host, repository
        self.insecure = insecure
        self.credentials = credentials
        self.limits = limits or RegistryLimits()
        self.base = ""
        self.auth: dict[str, str] = {}

    # -- connection and auth ----------------------------------------------------------------
    def ping(self) -> None:
        """Find the API (https, then http when allowed) and authenticate if it asks."""
        schemes = ["https", "http"] if Insecure.HTTP in self.insecure else ["https"]
        if Insecure.HTTP in self.insecure and not self._speaks_tls():
            schemes = ["http"]  # https would fail here: skip the system CA store's load
        error: TransportError | None = None
        for scheme in schemes:
            try:
                resp = fetch(
                    f"{scheme}://{self.host}/v2/", limits=self.limits.small, insecure=self.insecure
                )
            except TransportError as exc:
                error = exc
                continue
            self.base = f"{scheme}://{self.host}"
            if resp.status == 401:
                self._authenticate(resp)
            elif resp.status != 200:
                raise TransportError(
                    f"{self.base}/v2/ answered {resp.status}: not a Docker registry (v2 API)"
                )
            return
        assert error is not None  # noqa: S101 - at least one scheme was tried
        if Insecure.HTTP not in self.insecure:
            error.hint = (error.hint + "; " if error.hint else "") + (
                "a plain-http registry needs --insecure-options=http"
            )
        raise error

    def _speaks_tls(self) -> bool:
        parts = urlsplit(f"//{self.host}")
        try:
            port = parts.port or 443
        except ValueError:
            return True  # the https request names what is wrong with the host
        return parts.hostname is None or speaks_tls(parts.hostname, port, self.limits.small)

    def _basic(self) -> str | None:
        creds = self.credentials(self.host)
        if creds is None:
            return None
        return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()

    def _realm_credentials(self, url: str) -> str | None:
        """The Basic header a token realm may see: the registry's credentials if the realm
        is https on the registry's own host, the realm host's own auth.d entry if it has
        one, else nothing (a registry's 401 must not send a password to a host it picks)."""
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            return None
        if parts.hostname.lower() == (urlsplit(self.base).hostname or "").lower():
            return self._basic()
        creds = self.credentials(parts.netloc.lower())
        if creds is None:
            return None
        return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()

    def _authenticate(self, resp: Response) -> None:
        challenge = resp.headers.get("www-authenticate", "")
        scheme, _, params_text = challenge.partition(" ")
        params = {m[0].lower(): m[1] or m[2] for m in _CHALLENGE.findall(params_text)}
        basic = self._basic() if self.base.startswith("https:") else None
        if scheme.lower() == "basic":
            if basic is None:
                raise UserError(
                    f"registry {self.host} needs credentials"
                    + (
                        ""
                        if self.base.startswith("https:")
                        else " (and they are never sent over plain http)"
                    ),
                    hint='add an auth.d file: {"rktKind": "dockerAuth", "rktVersion": "v1", '
                    f'"registries": ["{self.host}"], "credentials": {{"user": …, "password": …}}}}',
                )
            self.auth = {"Authorization": basic}
            return
        if scheme.lower() != "bearer" or not params.get("realm"):
            raise TransportError(f"registry {self.host} asks for unsupported auth {challenge!r}")
        self.auth = {"Authorization": f"Bearer {self._token(params)}"}

    def _token(self, params: dict[str, str]) -> str:
        realm = params["realm"]
        query = {"scope": f"repository:{self.repository}:pull"}
        if params.get("service"):
            query["service"] = params["service"]
        url = f"{realm}{'&' if '?' in realm else '?'}{urlencode(query)}"
        headers = {}
        basic = self._realm_credentials(url)
        if basic is not None:
            headers["Authorization"] = basic
        resp = fetch(url, limits=self.limits.small, insecure=self.insecure, headers=headers)
        if resp.status != 200:
            raise TransportError(
                f"token server {realm} answered {resp.status} for {self.repository}",
                hint="check the dockerAuth credentials in auth.d, and the image name",
            )
        try:
            doc = json.loads(resp.body)
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError) as exc:
            raise TransportError(f"token server {realm} sent no JSON token: {exc}") from exc
        if not isinstance(token, str) or not token:
            raise TransportError(f"token server {realm} sent no token")
        return token

    def _get(
        self, path: str, limits: Limits, headers: dict[str, str] | None = None, sink: object = None
    ) -> Response:
        url = f"{self.base}/v2/{self.repository}/{path}"
        sent = {**(headers or {}), **self.auth}
        return fetch(url, limits=limits, insecure=self.insecure, headers=sent, sink=sink)  # type: ignore[arg-type]

    # -- content ------------------------------------------------------------------------------
    def manifest(self, reference: str) -> tuple[bytes, str, str]:
        """(body, content type, digest) of a manifest or index; a digest reference is checked."""
        resp = self._get(f"manifests/{reference}", self.limits.small, {"Accept": _ACCEPT})
        if resp.status == 404:
            raise UserError(
                f"image {self.host}/{self.repository}:{reference} not found on the registry",
                hint="check the name and tag (or digest)",
            )
        if resp.status != 200:
            raise TransportError(
                f"{self.base}/v2/{self.repository}/manifests/{reference}: expected a 200 OK "
                f"got {resp.status}"
            )
        wanted = reference if ":" in reference else resp.headers.get("docker-content-digest", "")
        algo = wanted.partition(":")[0] if wanted else "sha256"
        h = _hasher(f"{algo}:")
        h.update(resp.body)
        got = f"{algo}:{h.hexdigest()}"
        if wanted and wanted != got:
            raise digest_mismatch(f"manifest {self.repository}@{reference}", wanted, got)
        if algo != "sha256":  # record one kind of digest whatever the registry hashes with
            got = "sha256:" + hashlib.sha256(resp.body).hexdigest()
        media = resp.headers.get("content-type", "").split(";")[0].strip()
        return resp.body, media, got

    def blob_bytes(self, digest: str, size: int) -> bytes:
        """A small blob (an image config), checked against its digest."""
        limits = Limits(
            min(size, self.limits.small.max_bytes),
            self.limits.small.connect_timeout,
            self.limits.small.total_timeout,
        )
        resp = self._get(f"blobs/{digest}", limits)
        if resp.status != 200:
            raise TransportError(f"blob {digest}: expected a 200 OK got {resp.status}")
        h = _hasher(digest)
        h.update(resp.body)
        got = f"{digest.partition(':')[0]}:{h.hexdigest()}"
        if got != digest:
            raise digest_mismatch(f"blob {self.repository}@{digest}", digest, got)
        return resp.body

    def check_size(self, digest: str, size: int) -> None:
        """A descriptor may not raise the blob cap: refuse, before any byte, a layer
        declared larger than it (or of a negative size)."""
        cap = self.limits.blob.max_bytes
        if not 0 <= size <= cap:
            raise RemoteLiedError(
                f"layer {self.repository}@{digest} declares {size} bytes, over the "
                f"{cap}-byte cap for one layer",
                hint="the registry is misconfigured or hostile; nothing was downloaded",
            )

    def blob_to(
        self,
        digest: str,
        size: int,
        f: BinaryIO,
        progress: Progress | None = None,
        where: str = "cas/tmp",
    ) -> None:
        """Download a layer into ``f`` (open ``r+b``), resuming from the bytes it holds.

        Those bytes are hashed first, so the digest always covers the whole blob; a complete,
        matching file is not fetched again. A 206 answer appends, any other 2xx restarts. A
        body cut short raises TransportError and leaves what arrived for the next attempt;
        wrong bytes raise RemoteLiedError and leave the file empty.
        """
        self.check_size(digest, size)
        have = f.seek(0, os.SEEK_END)
        if have == size and _BlobSink(f, digest, have, None).result() == digest:
            return
        offset = have if 0 < have < size else 0
        what = f"layer {digest}"
        need_space(f.fileno(), size - offset, self.limits.reserve, what, where)
        # a registry may ignore Range and send it all: cap at the full size (one byte more
        # reaches the sink, which calls it the lie it is rather than a transfer to resume)
        limits = dataclasses.replace(self.limits.blob, max_bytes=size + 1)
        watch = SpaceWatch(f.fileno(), self.limits.reserve, what, where)
        sink = _BlobSink(f, digest, offset, progress, size=size, watch=watch)
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            resp = self._get(f"blobs/{digest}", limits, headers, sink)
        finally:
            f.flush()
        if resp.status not in (200, 206):
            raise TransportError(f"blob {digest}: expected a 200 OK got {resp.status}")
        if progress is not None:
            progress.finish()
        got_bytes = f.tell()
        if got_bytes < size:
            raise TransportError(
                f"blob {digest}: the registry sent {got_bytes} of {size} bytes",
                hint="run the fetch again: it resumes where this one stopped",
            )
        got = sink.result()
        if got != digest:
            f.truncate(0)
            f.flush()
            raise digest_mismatch(f"layer {self.repository}@{digest}", digest, got)

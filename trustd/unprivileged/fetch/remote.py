"""Remote images: https URLs and appc names (meta discovery), with rkt's fetch order.

For a name: store lookup (pull policy ``new``/``never``), discovery, TOFU key discovery,
signature first and its signer checked against the keyring *before* the image body is
downloaded (rkt #573; an HTTP 202 defers the signature once), then the image, the gate,
name and label checks, the store, and the dependencies the same way.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pysequoia

from trustd.shared._dataclass import frozen
from trustd.shared.appc.aci import AciLimits
from trustd.shared.appc.identifier import ACIdentifier
from trustd.shared.errors import TransportError, UntrustedSignerError, UserError
from trustd.shared.store import ImageRecord, admit
from trustd.shared.store._stored import stored_info
from trustd.shared.verify import format_fingerprint
from trustd.unprivileged.fetch._auth import auth_headers
from trustd.unprivileged.fetch._download import download
from trustd.unprivileged.fetch.request import FetchRequest, ImageRef, host_labels
from trustd.unprivileged.fetch.workflow import (
    FetchContext,
    check_requested,
    read_signature,
    say_verified,
)
from trustd.unprivileged.transport import IMAGE_LIMITS, SIGNATURE_LIMITS, fetch

MAX_DEPENDENCY_DEPTH = 16


def _get_signature(url: str, ctx: FetchContext) -> bytes | None:
    """The signature bytes, or None when the server deferred it (HTTP 202)."""
    response = fetch(
        url,
        limits=SIGNATURE_LIMITS,
        insecure=ctx.insecure,
        headers=auth_headers(url, ctx.auth),
    )
    if response.status == 202:
        print("image: server requested deferring the signature download", file=sys.stderr)
        return None
    if response.status != 200:
        raise TransportError(
            f"fetching signature {url}: expected a 200 OK got {response.status}",
            hint="is the image signed? (IMAGE.aci.asc)",
        )
    return response.body


def _signer_known_early(signature: bytes, name: ACIdentifier, ctx: FetchContext) -> None:
    """rkt #573: refuse an unknown signer before downloading the image body."""
    try:
        sig = pysequoia.Sig.from_bytes(signature)
    except (RuntimeError, ValueError):
        return  # the gate will refuse it with the full reason
    issuer = sig.issuer_fingerprint or sig.issuer_key_id
    if issuer and ctx.keystore.keyring_for(name).find(issuer) is None:
        print("image: if you expected the signing key to change, try running:", file=sys.stderr)
        print(f'image:     rkt trust --prefix "{name}"', file=sys.stderr)
        raise UntrustedSignerError(
            f'image "{name}" is signed by key {format_fingerprint(issuer)}, which is not '
            f'trusted for prefix "{name}"',
            hint=f'run: rkt trust --prefix "{name}"',
        )


@frozen
class _Cache:
    fresh: ImageRecord | None  # usable without asking the server
    stored: ImageRecord | None  # what a 304 would mean
    etag: str | None


def _cached(url: str, ctx: FetchContext) -> _Cache:
    """What the store holds for ``url``: fresh (max-age, or policy new), or revalidatable."""
    row = ctx.store.index.remote(url)
    records = ctx.store.index.by_key_prefix(row[0]) if row else []
    if row is None or not records:
        return _Cache(None, None, None)
    _key, etag, max_age, when = row
    fresh = ctx.pull_policy in ("new", "never") or bool(
        max_age and when + timedelta(seconds=max_age) > datetime.now(UTC)
    )
    if fresh and ctx.debug:
        print(f"image: image for {url} isn't expired, not fetching.", file=sys.stderr)
    return _Cache(records[0] if fresh else None, records[0], etag)


def _max_age(cache_control: str | None) -> int | None:
    for part in (cache_control or "").split(","):
        key, _, value = part.strip().partition("=")
        if key.lower() == "max-age" and value.isdigit():
            return int(value)
    return None


def fetch_url(
    aci_url: str,
    asc_url: str | None,
    ctx: FetchContext,
    *,
    ref: ImageRef,
    local_signature: bytes | None = None,
) -> ImageRecord:
    """Download, gate and store one ACI URL; reuse the store when the cache allows."""
    cache = _cached(aci_url, ctx)
    if cache.fresh is not None:
        return cache.fresh
    if ctx.pull_policy == "never":
        raise UserError(
            f"unable to fetch image from {aci_url}: the pull policy is never and "
            "it is not in the store"
        )
    gate = ctx.gate_keystore()
    signature = local_signature
    if gate is not None and signature is None and asc_url:
        signature = _get_signature(asc_url, ctx)
        if signature is not None and ref.name is not None:
            _signer_known_early(signature, ref.name, ctx)
    headers = auth_headers(aci_url, ctx.auth)
    if ctx.debug:  # rkt's diagnostic line
        print(f'image: remote fetching from URL "{aci_url}"', file=sys.stderr)
    with download(
        aci_url,
        ctx.store.layout.tmp,
        limits=replace(IMAGE_LIMITS, min_rate=ctx.min_rate),
        insecure=ctx.insecure,
        headers=headers,
        what="ACI",
        etag=cache.etag,
        inspect=AciLimits(),
    ) as got:
        if got.not_modified and cache.stored is not None:
            ctx.store.index.set_remote(
                aci_url,
                cache.stored.key,
                cache.etag,
                _max_age(got.response.headers.get("cache-control")),
            )
            return cache.stored
        if gate is not None and signature is None and asc_url:
            signature = _get_signature(asc_url, ctx)
            if signature is None:
                raise TransportError(f"{asc_url}: server asked to defer the download again")
        admitted = admit(got.path, signature, gate, source=aci_url, inspected=got.inspected)
        check_requested(admitted, ref)
        say_verified(admitted)
        ctx.policy_gate(admitted)
        stored = ctx.store.put(admitted, got.path, signature, source=aci_url)
        ctx.store.index.set_remote(
            aci_url,
            stored.key,
            got.response.headers.get("etag"),
            _max_age(got.response.headers.get("cache-control")),
        )
        return stored


def stored_by_name(ref: ImageRef, ctx: FetchContext) -> ImageRecord | None:
    """The newest stored image with ``ref``'s name and labels (pull policies new, never)."""
    if ref.name is None or ctx.pull_policy == "update":
        return None
    wanted = dict(ref.labels)
    for record in sorted(  # newest first (as root: those root fetched, by root's own time)
        ctx.store.index.by_name(str(ref.name)), key=ctx.store.index.fetch_order, reverse=True
    ):
        if all(record.label(k) == v for k, v in wanted.items()):
            return record
    return None


def fetch_name(ref: ImageRef, ctx: FetchContext, depth: int = 0) -> ImageRecord:
    from trustd.unprivileged.discovery import discover_images  # noqa: PLC0415
    from trustd.unprivileged.fetch._tofu import maybe_discover_keys  # noqa: PLC0415

    assert ref.name is not None  # noqa: S101 - names always parse to one
    found = stored_by_name(ref, ctx)
    if found is not None:
        if ctx.debug:  # rkt's diagnostic line
            print(f"image: using image from local store for image name {ref.text}", file=sys.stderr)
        return found
    if ctx.pull_policy == "never":
        raise UserError(
            f'unable to fetch image from image name "{ref.text}": either image '
            "was not found in the store or store was disabled and fetching from "
            "remote yielded nothing or it was disabled"
        )
    labels = dict(ref.labels)
    endpoints = discover_images(ref.name, labels, insecure=ctx.insecure)
    if ctx.gate_keystore() is not None:
        maybe_discover_keys(ref.name, ctx)
    record = fetch_url(endpoints[0].aci, endpoints[0].asc, ctx, ref=ref)
    _fetch_dependencies(record, ctx, depth)
    return record


def _fetch_dependencies(record: ImageRecord, ctx: FetchContext, depth: int) -> None:
    # the image's own dependencies: as this fetch verified them, else from its stored bytes
    # hashed against its ID; never the blob dir's manifest file, which the group rewrites (red
    # team 11: a forged dependency on an old release entered root's record of its fetches)
    manifest = ctx.store.manifests.get(record.full_key.id)
    if manifest is None:
        manifest = stored_info(ctx.store.layout, record).manifest
    for dep in manifest.dependencies or ():
        if depth >= MAX_DEPENDENCY_DEPTH:
            raise UserError(
                f"dependencies of {record.name} nest deeper than "
                f"{MAX_DEPENDENCY_DEPTH} levels (a loop?)"
            )
        labels = {**host_labels(), **{lbl.name.value: lbl.value for lbl in dep.labels or ()}}
        dep_ref = ImageRef(
            "name", str(dep.image_name), name=dep.image_name, labels=tuple(sorted(labels.items()))
        )
        got = fetch_name(dep_ref, ctx, depth + 1)
        if dep.image_id and not dep.image_id.startswith(got.key[: len(dep.image_id)]):
            raise UserError(
                f"dependency {dep.image_name} of {record.name}: fetched "
                f"{got.key[:39]}, but the manifest pins {dep.image_id[:39]}"
            )


def fetch_remote(request: FetchRequest, ctx: FetchContext) -> ImageRecord:
    ref = request.ref
    if ref.kind == "name":
        return fetch_name(ref, ctx)
    local_sig = read_signature(request.signature) if request.signature else None
    asc_url = None if request.signature else ref.text + ".asc"
    return fetch_url(ref.text, asc_url, ctx, ref=ref, local_signature=local_sig)

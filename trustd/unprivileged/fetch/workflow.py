"""One image fetch: obtain the bytes, pass the admission gate, store once, report the record."""

from __future__ import annotations

import shutil
import sys
from dataclasses import field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from trustd.shared._dataclass import frozen
from trustd.shared._fsutil import read_capped
from trustd.shared.errors import RemoteLiedError, UserError
from trustd.shared.fetch_settings import DEFAULT_MIN_RATE
from trustd.shared.insecure import Insecure
from trustd.shared.keystore import Keystore
from trustd.shared.ocisig.name import DockerReference
from trustd.shared.policy import ImageRef as PolicyRef
from trustd.shared.policy import (
    Policy,
    allows_unsigned,
    decide_fetch,
    signed_identity,
)
from trustd.shared.policy.layouts import layout_identity
from trustd.shared.policy.log import append_decision
from trustd.shared.store import AdmittedImage, ImageRecord, ImageStore, admit
from trustd.shared.store._docker_admit import docker_origin
from trustd.unprivileged.fetch._auth import AuthConfig
from trustd.unprivileged.fetch.request import FetchRequest, ImageRef

if TYPE_CHECKING:
    from trustd.unprivileged.docker import LocalSource
    from trustd.unprivileged.docker.signatures import SignatureCheck

MAX_SIGNATURE = 1 << 20


@frozen
class FetchContext:
    store: ImageStore
    keystore: Keystore
    insecure: Insecure
    policy: Policy  # required: the fetch gate has no silent default (CONVENTIONS 5)
    pull_policy: str = "update"
    debug: bool = False
    auth: AuthConfig = field(default_factory=AuthConfig)  # auth.d, read before the drop
    trust_keys_from_https: bool = False
    # image downloads' throughput floor (bytes, seconds): fetch.d's minRate, ADR 0023
    min_rate: tuple[int, float] = DEFAULT_MIN_RATE

    def gate_keystore(self) -> Keystore | None:
        """None only when the user opted out with --insecure-options=image."""
        return None if Insecure.IMAGE in self.insecure else self.keystore

    def policy_gate(self, admitted: AdmittedImage) -> None:
        """The fetch gate: the policy's ``require`` for the image's scope, decided, logged
        (hash-chained), then enforced, before anything is stored. The scope is looked up by
        the verified manifest's name and ``version`` label, so ``name:version`` scopes apply."""
        manifest = admitted.info.manifest
        docker = admitted.provenance.docker_reference
        named = PolicyRef.of(manifest.name, manifest.label("version"))
        signed_for = DockerReference.parse(docker).name if docker else None
        decision = decide_fetch(
            self.policy,
            # docker:// scopes: the name the evidence verified for, else the manifest's own
            replace(named, docker=signed_for or docker_origin(manifest)),
            admitted.provenance.signers,
            self.keystore,
            datetime.now(UTC),
            insecure_image=admitted.provenance.insecure,
            image_id=admitted.key,
            docker_name=signed_for,
            manifest_digest=admitted.provenance.source_digest,
        )
        append_decision(self.store.layout.root, decision)
        decision.enforce()


def read_signature(path: Path) -> bytes:
    try:
        return read_capped(path, MAX_SIGNATURE)
    except FileNotFoundError as exc:
        raise UserError(  # rkt's words (rkt_trust_test.go matches them)
            f"error opening signature file: open {path}: no such file or directory",
            hint="give the signature with --signature FILE, or trust the image unsigned: "
            "--insecure-options=image",
        ) from exc
    except (OSError, ValueError) as exc:
        raise UserError(f"error opening signature file: cannot read {path}: {exc}") from exc


@frozen
class LocalInputs:
    """A local image and its signature, opened by the caller before any privilege drop."""

    image: BinaryIO
    signature: bytes | None


def open_local(request: FetchRequest, insecure: Insecure) -> LocalInputs | LocalSource | None:
    """Open a local source now, as the invoking user (root's fetch then drops privileges):
    a file's image and signature, a ``docker-archive:`` file or an ``oci:`` directory.
    None for network sources."""
    if request.ref.kind == "docker":
        from trustd.unprivileged.docker import open_local_source  # noqa: PLC0415

        return open_local_source(request.ref.text)
    path = request.ref.path
    if request.ref.kind != "file" or path is None:
        return None
    try:
        image = path.open("rb")
    except FileNotFoundError as exc:
        raise UserError(f"open {path}: no such file or directory") from exc
    except OSError as exc:
        raise UserError(f"cannot open {path}: {exc.strerror}") from exc
    signature = None
    if Insecure.IMAGE not in insecure:
        signature = read_signature(request.signature or path.with_name(path.name + ".asc"))
    return LocalInputs(image, signature)


def check_requested(admitted: AdmittedImage, ref: ImageRef) -> None:
    """A name fetch must get the name and labels it asked for (rkt ValidateName/Labels)."""
    manifest = admitted.info.manifest
    if ref.name is not None and manifest.name != ref.name:
        raise RemoteLiedError(
            f'error when reading the app name: "{ref.name}" expected but "{manifest.name}" found'
        )
    for key, wanted in ref.labels:
        got = manifest.label(key)
        if got is None:
            raise RemoteLiedError(f'requested label "{key}" not provided by the image manifest')
        if got != wanted:
            raise RemoteLiedError(
                f'requested value for label "{key}": "{wanted}" differs from '
                f'fetched aci label value: "{got}"'
            )


def _fetch_file(request: FetchRequest, local: LocalInputs, ctx: FetchContext) -> ImageRecord:
    """Copy the opened file into the store's scratch space, then admit and store that copy."""
    path = request.ref.path
    if ctx.debug:  # rkt's diagnostic line (rkt_fetch_test.go, rkt_stage1_loading_test.go)
        print(f"image: using image from file {Path(str(path)).absolute()}", file=sys.stderr)
    with ctx.store.scratch_file() as scratch:
        with scratch.open("wb") as out:
            shutil.copyfileobj(local.image, out, 1 << 20)
        admitted = admit(scratch, local.signature, ctx.gate_keystore(), source=str(path))
        say_verified(admitted)
        ctx.policy_gate(admitted)
        return ctx.store.put(
            admitted, scratch, local.signature, source=f"file://{Path(str(path)).absolute()}"
        )


def say_verified(admitted: AdmittedImage) -> None:
    if admitted.signature is None:
        return
    print("image: signature verified:", file=sys.stderr)
    for uid in admitted.signature.user_ids:
        print(f"  {uid}", file=sys.stderr)


def _signature_check(ctx: FetchContext) -> SignatureCheck:
    from trustd.shared.ocisig.registries_d import load_registries_d  # noqa: PLC0415
    from trustd.unprivileged.docker.signatures import SignatureCheck  # noqa: PLC0415

    dirs = tuple(d / "registries.d" for d in ctx.keystore.config_dirs)
    registries = load_registries_d(dirs)
    return SignatureCheck(
        ctx.keystore, registries, ctx.insecure, lambda ref: signed_identity(ctx.policy, ref)
    )


def fetch_image(
    request: FetchRequest, ctx: FetchContext, local: LocalInputs | LocalSource | None = None
) -> ImageRecord:
    """Fetch one image; local sources take ``local`` from :func:`open_local`."""
    if request.ref.kind == "file":
        if local is None:
            local = open_local(request, ctx.insecure)
        assert isinstance(local, LocalInputs)  # noqa: S101 - file requests always open
        return _fetch_file(request, local, ctx)
    if request.ref.kind == "docker":
        from trustd.unprivileged.docker import DockerFetch, RegistryLimits, fetch_docker  # noqa: PLC0415
        from trustd.unprivileged.fetch._auth import docker_credentials  # noqa: PLC0415
        from trustd.unprivileged.transport import IMAGE_LIMITS  # noqa: PLC0415

        auth = ctx.auth
        job = DockerFetch(
            store=ctx.store,
            insecure=ctx.insecure,
            credentials=lambda registry: docker_credentials(registry, auth),
            pull_policy=ctx.pull_policy,
            admitted_gate=ctx.policy_gate,
            accept_unsigned=lambda name: allows_unsigned(ctx.policy, name),
            signatures=_signature_check(ctx),
            layout_identity=lambda path, tag: layout_identity(ctx.policy.layouts, path, tag),
            limits=RegistryLimits(blob=replace(IMAGE_LIMITS, min_rate=ctx.min_rate)),
        )
        opened = None if isinstance(local, LocalInputs) else local
        return fetch_docker(request.ref.text, job, opened)
    from trustd.unprivileged.fetch.remote import fetch_remote  # noqa: PLC0415 - network code on demand

    return fetch_remote(request, ctx)

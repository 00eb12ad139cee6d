"""One image fetch: obtain the bytes, pass the admission gate, store once, report the record."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from trustd._fsutil import read_capped
from trustd.errors import RemoteLiedError, UserError
from trustd.fetch.request import FetchRequest, ImageRef
from trustd.insecure import Insecure
from trustd.keystore import Keystore
from trustd.store import AdmittedImage, ImageRecord, ImageStore, admit

MAX_SIGNATURE = 1 << 20


@dataclass(frozen=True, slots=True)
class FetchContext:
    store: ImageStore
    keystore: Keystore
    insecure: Insecure
    pull_policy: str = "update"
    debug: bool = False

    def gate_keystore(self) -> Keystore | None:
        """None only when the user opted out with --insecure-options=image."""
        return None if Insecure.IMAGE in self.insecure else self.keystore


def _read_signature(path: Path) -> bytes:
    try:
        return read_capped(path, MAX_SIGNATURE)
    except FileNotFoundError as exc:
        raise UserError(
            f"open {path}: no such file or directory",
            hint="give the signature with --signature FILE",
        ) from exc
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read signature {path}: {exc}") from exc


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


def _fetch_file(request: FetchRequest, ctx: FetchContext) -> ImageRecord:
    path = request.ref.path
    assert path is not None  # noqa: S101 - parse_image_ref sets it for files
    if not path.is_file():
        raise UserError(f"open {path}: no such file or directory")
    gate = ctx.gate_keystore()
    signature = None
    if gate is not None:
        signature = _read_signature(request.signature or path.with_name(path.name + ".asc"))
    admitted = admit(path, signature, gate, source=str(path))
    _say_verified(admitted)
    return ctx.store.put(admitted, path, signature, source=f"file://{path.absolute()}")


def _say_verified(admitted: AdmittedImage) -> None:
    if admitted.signature is None:
        return
    print("image: signature verified:", file=sys.stderr)
    for uid in admitted.signature.user_ids:
        print(f"  {uid}", file=sys.stderr)


def fetch_image(request: FetchRequest, ctx: FetchContext) -> ImageRecord:
    if request.ref.kind == "file":
        return _fetch_file(request, ctx)
    if request.ref.kind == "docker":
        raise UserError(
            "signature verification for docker images is not supported "
            "(try --insecure-options=image)"
            if Insecure.IMAGE not in ctx.insecure
            else "docker:// images are not supported yet",
            hint="docker:// arrives with issue #7",
        )
    from trustd.fetch.remote import fetch_remote  # noqa: PLC0415 - network code on demand

    return fetch_remote(request, ctx)

"""``rkt trust verify IMAGE.aci``: check an image file's signature against the keystore.

The image name comes from the manifest inside the archive (as rkt does), so the archive is
validated first; the signature is checked over the exact file bytes. Nothing is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trustd.shared.config import GlobalOptions
from trustd.shared.errors import UserError
from trustd.shared.keystore import Keystore
from trustd.shared.verify import format_fingerprint, verify_detached


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "trust-verify",
        parents=parents,
        prog="rkt trust verify",
        help="verify an ACI file's signature against the trusted keys (rkt trust verify)",
    )
    p.add_argument("image", type=Path, help="the .aci file")
    p.add_argument("--signature", type=Path, help="detached signature (default: IMAGE.asc)")
    p.set_defaults(func=run)


def _signature(image: Path, given: Path | None) -> bytes:
    from trustd.unprivileged.fetch.workflow import read_signature  # noqa: PLC0415

    return read_signature(given or image.with_name(image.name + ".asc"))


def run(args: argparse.Namespace) -> int:
    from trustd.shared.appc.aci import AciLimits, image_id_short, inspect_aci  # noqa: PLC0415

    options: GlobalOptions = args.options
    image: Path = args.image
    if not image.is_file():
        raise UserError(f"image file {str(image)!r} does not exist")
    signature = _signature(image, args.signature)
    info = inspect_aci(image, limits=AciLimits())
    keystore = Keystore(options.dirs.system_config, options.dirs.local_config)
    result = verify_detached(image, signature, keystore.keyring_for(info.manifest.name))
    print(f'signature verified: image "{result.subject}" ({image_id_short(info.image_id)})')
    print(f"  signed by {format_fingerprint(result.signer)}, trusted via {result.trusted_via}")
    for uid in result.user_ids:
        print(f"  {uid}")
    return 0

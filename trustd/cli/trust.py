"""``rkt trust``: review a key and trust it for a prefix (or, explicitly, for every image).

``rkt trust list``, ``rkt trust remove`` and ``rkt trust verify`` are trustd's additions
(trust_manage.py, trust_verify.py; main.py routes ``trust list`` to the verb ``trust-list``).
A key file literally named ``list`` is ``./list``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from trustd.cli._common import info
from trustd.shared._dataclass import frozen
from trustd.shared.appc.identifier import ACIdentifier
from trustd.shared.config import GlobalOptions
from trustd.shared.errors import TrustdError, UserError
from trustd.shared.insecure import Insecure, warn_insecure
from trustd.shared.keystore import AddResult, Keystore
from trustd.shared.ocisig.name import SCHEME, DockerName
from trustd.shared.ocisig.sigstore import PemKey, is_pem_public_key, parse_pem_key
from trustd.shared.verify import PublicKey, format_fingerprint
from trustd.unprivileged.fetch.review import ask_to_trust, interactive, no_tty_guidance, show_key

IMPLICIT_ROOT = """Please provide a specific domain prefix to trust:
    rkt trust --prefix "example.com/foo" [PUBKEY]
Otherwise, trust at the root domain (not recommended) must be explicitly requested:
    rkt trust --root PUBKEY"""


@frozen
class Candidate:
    location: str
    key: PublicKey


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "trust",
        parents=parents,
        help="trust a key for image verification",
        description="Trust a key for a prefix. Also: rkt trust list | remove | verify.",
    )
    p.add_argument("--prefix", default="", help="image name prefix the key is trusted for")
    p.add_argument("--root", action="store_true", help="trust the key for all images")
    p.add_argument(
        "--skip-fingerprint-review",
        action="store_true",
        help="accept the key without asking to review its fingerprint",
    )
    p.add_argument(
        "--insecure-allow-http",
        action="store_true",
        help="allow http:// key URLs and http discovery",
    )
    p.add_argument("args", nargs="*", metavar="PUBKEY", help="key file or https URL")
    p.set_defaults(func=run)


Scope = ACIdentifier | DockerName | None


def parse_prefix(text: str) -> ACIdentifier | DockerName:
    """An ACI prefix (``example.com/app``) or a Docker one (``docker://HOST[:PORT]/NS[/REPO]``,
    the port as typed; docs/adr/0021-docker-signatures.md)."""
    if text.startswith(SCHEME):
        return DockerName.parse(text)
    return ACIdentifier.parse(text)


def _scope(args: argparse.Namespace) -> Scope:
    if args.root and args.prefix:
        raise UserError("--root and --prefix usage mutually exclusive")
    if args.prefix.startswith(SCHEME):
        if not args.args:
            raise UserError(
                f'no key given for prefix "{args.prefix}": docker:// prefixes have no discovery',
                hint=f'rkt trust --prefix "{args.prefix}" KEY.asc (an OpenPGP public key)',
            )
        return DockerName.parse(args.prefix)
    if "://" in args.prefix:
        raise UserError("--prefix must not contain a URL scheme, omit https://")
    if args.root:
        if not args.args:
            raise UserError(
                "error determining key location: empty prefix",
                hint="root keys are never discovered: rkt trust --root PUBKEY",
            )
        return None
    if not args.prefix:
        if args.args:
            raise UserError(
                "aborting due to implicit unbounded trust (root domain)", hint=IMPLICIT_ROOT
            )
        raise UserError(
            "missing --prefix or --root",
            hint="usage: rkt trust --prefix PREFIX [PUBKEY...] | rkt trust --root PUBKEY...",
        )
    return ACIdentifier.parse(args.prefix)


def _pem_keys(args: argparse.Namespace, scope: Scope) -> list[tuple[str, PemKey]] | None:
    """Sigstore PEM public keys given for a ``docker://`` prefix (local files), or None
    when the arguments are OpenPGP keys (the usual path)."""
    if not isinstance(scope, DockerName):
        return None
    found: list[tuple[str, PemKey]] = []
    for loc in args.args:
        path = Path(loc)
        data = path.read_bytes() if path.is_file() else b""
        if not is_pem_public_key(data):
            return None if not found else _mixed(loc)
        found.append((loc, parse_pem_key(data, source=loc)))
    return found


def _mixed(loc: str) -> list[tuple[str, PemKey]]:
    raise UserError(
        f"{loc!r} is not a PEM public key, but other keys given are",
        hint="trust OpenPGP keys and sigstore PEM keys with separate rkt trust commands",
    )


def _add_pem_keys(
    keys: list[tuple[str, PemKey]], scope: DockerName, keystore: Keystore, args: argparse.Namespace
) -> int:
    for loc, key in keys:
        print(
            f'pubkey: prefix: "{scope}"\nkey: "{loc}"\nsigstore key ID: {key.key_id} '
            f"({key.algorithm})",
            file=sys.stderr,
        )
        if not args.skip_fingerprint_review:
            if not interactive():
                raise UserError(
                    "error adding keys: error reviewing key: unable to ask user to "
                    "review fingerprint due to lack of tty",
                    hint=f'check the key ID out of band, then run: rkt trust --prefix "{scope}" '
                    f"--skip-fingerprint-review {loc}",
                )
            if not ask_to_trust():
                info("pubkey", f'not trusting "{loc}"')
                continue
        _announce(keystore.add_pem(key, scope), scope)
    return 0


def run(args: argparse.Namespace) -> int:
    options: GlobalOptions = args.options
    scope = _scope(args)
    pem = _pem_keys(args, scope)
    if pem is not None and isinstance(scope, DockerName):
        keystore = Keystore(options.dirs.system_config, options.dirs.local_config)
        return _add_pem_keys(pem, scope, keystore, args)
    insecure = options.insecure | (Insecure.HTTP if args.insecure_allow_http else Insecure.NONE)
    warn_insecure("trust", insecure, Insecure.TLS | Insecure.HTTP)
    from trustd.unprivileged.fetch.keysource import load_keys  # noqa: PLC0415 - network code only when needed

    locations = args.args or _discover(scope, insecure)
    candidates = [
        Candidate(loc, key)
        for loc in locations
        for key in load_keys(loc, insecure=insecure, allow_http=args.insecure_allow_http)
    ]
    keystore = Keystore(options.dirs.system_config, options.dirs.local_config)
    for c in candidates:  # refuse before writing anything: all or nothing
        _check_usable(c)
    for c in candidates:
        _review_and_add(c, scope, keystore, args, options)
    return 0


def _discover(scope: Scope, insecure: Insecure) -> list[str]:
    from trustd.unprivileged.discovery import discover_pubkeys  # noqa: PLC0415

    if not isinstance(scope, ACIdentifier):  # pragma: no cover - _scope() refuses these
        raise UserError("error determining key location: empty prefix")
    try:
        return discover_pubkeys(scope, insecure=insecure)
    except TrustdError as exc:
        exc.message = f"error determining key location: {exc.message}"
        raise


def _check_usable(c: Candidate) -> None:
    from datetime import UTC, datetime  # noqa: PLC0415

    refusal = c.key.refusal(datetime.now(UTC))
    if refusal:
        raise UserError(
            f"not trusting key {format_fingerprint(c.key.fingerprint)} from {c.location!r}: "
            f"it {refusal}",
            hint="nothing was changed; ask the publisher for a current key",
        )


def _review(c: Candidate, scope: Scope, args: argparse.Namespace, options: GlobalOptions) -> bool:
    where = "as a root key" if scope is None else f'for prefix "{scope}"'
    if args.skip_fingerprint_review or (
        options.trust_keys_from_https and c.location.startswith("https://")
    ):
        print(f'Trusting "{c.location}" {where} without fingerprint review.')
        return True
    if not interactive():
        target = "--root PUBKEY" if scope is None else f'--prefix "{scope}"'
        no_tty_guidance(
            scope,
            f"check the fingerprint out of band, then run: rkt trust "
            f"{target} --skip-fingerprint-review PUBKEY",
        )
        raise UserError(
            "error adding keys: error reviewing key: unable to ask user to "
            "review fingerprint due to lack of tty"
        )
    if not ask_to_trust():
        info("pubkey", f'not trusting "{c.location}"')
        return False
    print(f'Trusting "{c.location}" {where} after fingerprint review.')
    return True


def _review_and_add(
    c: Candidate,
    scope: Scope,
    keystore: Keystore,
    args: argparse.Namespace,
    options: GlobalOptions,
) -> None:
    show_key(c.key, c.location, scope)
    if _review(c, scope, args, options):
        _announce(keystore.add(c.key, scope), scope)


def _announce(result: AddResult, scope: Scope) -> None:
    what = "root key" if scope is None else f'key for prefix "{scope}"'
    shown = (
        format_fingerprint(result.key.fingerprint)
        if result.key is not None
        else result.pem.key_id
        if result.pem is not None
        else "?"
    )
    if result.status == "already-trusted":
        print(f'The {what} {shown} is already trusted at "{result.path}"; nothing changed')
    elif result.status == "updated":
        print(f'Updated {what} at "{result.path}"')
    elif scope is None:
        print(f'Added root key at "{result.path}"')
    else:
        print(f'Added key for prefix "{scope}" at "{result.path}"')

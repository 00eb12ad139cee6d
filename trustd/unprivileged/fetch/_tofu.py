"""Key discovery during fetch (rkt's maybeFetchPubKeys): trust on first use, with review.

Only when no key exists for the name or any ancestor prefix (root keys don't count).
Keys found through ``ac-discovery-pubkeys`` are shown; they are trusted for the image name
when the user says yes on a terminal, or with ``--trust-keys-from-https`` for https keys.
Failures here are reported and the fetch goes on: the signature check decides.
"""

from __future__ import annotations

import sys

from trustd.shared.appc.identifier import ACIdentifier
from trustd.shared.errors import TrustdError
from trustd.shared.insecure import Insecure
from trustd.shared.verify import PublicKey
from trustd.unprivileged.fetch.keysource import load_keys
from trustd.unprivileged.fetch.review import ask_to_trust, interactive, no_tty_guidance, show_key
from trustd.unprivileged.fetch.workflow import FetchContext


def _say(message: str) -> None:
    print(f"image: {message}", file=sys.stderr)


def _accept(location: str, name: ACIdentifier, ctx: FetchContext) -> bool:
    if ctx.trust_keys_from_https and location.startswith("https://"):
        print(
            f'Trusting "{location}" for prefix "{name}" without fingerprint review.',
            file=sys.stderr,
        )
        return True
    if interactive():
        return ask_to_trust(sys.stderr)
    no_tty_guidance(name, f'run: rkt trust --prefix "{name}"')
    return False


def select_keys(name: ACIdentifier, ctx: FetchContext) -> list[tuple[str, PublicKey]]:
    """Discover keys for ``name`` if it has none, show each, keep those the user accepts."""
    from trustd.unprivileged.discovery import discover_pubkeys  # noqa: PLC0415

    if ctx.keystore.has_prefix_keys(name):
        if ctx.debug:
            _say(f'keys already exist for prefix "{name}", not fetching again')
        return []
    if Insecure.TLS in ctx.insecure and Insecure.PUBKEY not in ctx.insecure:
        _say("not discovering keys over unverified TLS (add --insecure-options=pubkey)")
        return []
    try:
        locations = discover_pubkeys(name, insecure=ctx.insecure)
    except TrustdError as exc:
        _say(f"error determining key location: {exc.message}")
        return []
    accepted: list[tuple[str, PublicKey]] = []
    for location in locations:
        try:
            keys = load_keys(
                location, insecure=ctx.insecure, allow_http=Insecure.PUBKEY in ctx.insecure
            )
        except TrustdError as exc:
            _say(f"error adding keys: {exc.message}")
            continue
        for key in keys:
            show_key(key, location, name, sys.stderr)
            if _accept(location, name, ctx):
                accepted.append((location, key))
    return accepted


def add_keys(name: ACIdentifier, keys: list[tuple[str, PublicKey]], ctx: FetchContext) -> None:
    for _location, key in keys:
        try:
            result = ctx.keystore.add(key, name)
        except TrustdError as exc:
            _say(f"error adding keys: {exc.message}")
            continue
        print(f'Added key for prefix "{name}" at "{result.path}"', file=sys.stderr)


def maybe_discover_keys(name: ACIdentifier, ctx: FetchContext) -> None:
    """In-process TOFU (non-root fetches; root's goes through the parent, see cli/fetch)."""
    add_keys(name, select_keys(name, ctx), ctx)

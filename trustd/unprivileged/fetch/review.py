"""Showing a key to a person and asking whether to trust it (rkt's pubkey review)."""

from __future__ import annotations

import sys
from typing import TextIO

from trustd.shared.appc.identifier import ACIdentifier
from trustd.shared.ocisig.name import DockerName
from trustd.shared.verify import PublicKey, format_fingerprint


def interactive() -> bool:
    """rkt asks for review only when both stdin and stderr are terminals."""
    return sys.stdin.isatty() and sys.stderr.isatty()


def show_key(
    key: PublicKey,
    location: str,
    scope: ACIdentifier | DockerName | None,
    out: TextIO | None = None,
) -> None:
    """rkt's display; ``rkt trust`` shows it on stdout, ``rkt fetch`` on stderr (whose stdout
    carries only image IDs)."""
    out = out or sys.stdout
    print(f'pubkey: prefix: "{scope or ""}"\nkey: "{location}"', file=sys.stderr)
    print(f"gpg key fingerprint is: {format_fingerprint(key.fingerprint)}", file=out)
    for sub in key.subkeys:
        print(f"    Subkey fingerprint: {format_fingerprint(sub.fingerprint)}", file=out)
    for uid in key.user_ids:
        print(f"\t{uid}", file=out)


def ask_to_trust(out: TextIO | None = None) -> bool:
    """rkt's prompt: only exact ``yes``/``no`` lines count; end of input means no."""
    out = out or sys.stdout
    print("Are you sure you want to trust this key (yes/no)?", file=out, flush=True)
    while True:
        answer = sys.stdin.readline()
        if answer in ("yes\n", "no\n", ""):
            return answer == "yes\n"
        print("Please enter 'yes' or 'no'", file=out, flush=True)


def no_tty_guidance(scope: ACIdentifier | DockerName | None, last: str) -> None:
    """The two ways out when nobody can be asked (rkt's wording, then ours)."""
    print(
        f'pubkey: To trust the key for "{scope or "root"}", do one of the following:',
        file=sys.stderr,
    )
    print("pubkey:  - call rkt with --trust-keys-from-https", file=sys.stderr)
    print(f"pubkey:  - {last}", file=sys.stderr)

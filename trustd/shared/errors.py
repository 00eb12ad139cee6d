"""One error root for trustd, with families by who is at fault (CONVENTIONS 8).

Every error carries a ``hint``: the next thing the user should do. The CLI catches
:class:`TrustdError` once, prints ``<command>: <message>`` and the hint, and exits 254.
"""

from __future__ import annotations


class TrustdError(Exception):
    """Root of every error trustd raises on purpose."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class RemoteLiedError(TrustdError):
    """What we were given does not check out: bad signature, unknown signer, digest mismatch."""


class UntrustedSignerError(RemoteLiedError):
    """The signature was made by a key the keyring for this name does not hold."""


class BadSignatureError(RemoteLiedError):
    """The signature does not match the signed bytes, or cannot be parsed."""


class RefusedKeyError(RemoteLiedError):
    """The signer is known but may not be used: revoked, expired or too weak."""


class TransportError(TrustdError):
    """The network failed us: unreachable host, timeout, size cap, TLS failure."""


class LocalStateError(TrustdError):
    """Something on local disk is corrupt or unreadable (store, keystore, config)."""


class PolicyViolationError(TrustdError):
    """A configured rule forbids the operation."""


class UserError(TrustdError):
    """The invocation itself is wrong: a bad flag, a malformed argument, a missing file."""


def report(command: str, exc: TrustdError, debug: bool) -> None:
    """Print ``<command>: <message>``, the hint indented below it, and with ``debug`` the
    chain of causes and the traceback (ADR 0003). Both the CLI and the root program use it."""
    import sys  # noqa: PLC0415
    import traceback  # noqa: PLC0415

    print(f"{command}: {exc.message}", file=sys.stderr)
    for line in exc.hint.splitlines():
        print(f"  {line}", file=sys.stderr)
    if debug:
        cause: BaseException | None = exc.__cause__
        depth = 1
        while cause is not None:
            print(f"{'  ' * depth}└─{cause}", file=sys.stderr)
            cause, depth = cause.__cause__, depth + 1
        traceback.print_exception(exc, file=sys.stderr)

"""One error root for trustd, with families by who is at fault (CONVENTIONS 8).

Every error carries a ``hint``: the next thing the user should do. The CLI catches
:class:`TrustdError` once, prints ``<command>: <message>`` and the hint, and exits 254.
"""

from __future__ import annotations

import errno
from pathlib import PurePath

SHOWN = 120  # characters of an untrusted or user-given string a message repeats


def _escaped(char: str) -> str:
    point = ord(char)
    if point < 0x100:
        return f"\\x{point:02x}"
    return f"\\u{point:04x}" if point < 0x10000 else f"\\U{point:08x}"


def printable(text: str) -> str:
    """``text`` with every character that is not printable escaped (``\\x1b``, ``\\u202e``):
    C0/C1 controls and DEL, and also format characters such as the bidirectional overrides,
    line and paragraph separators, surrogates, private-use and unassigned code points, and
    spaces other than the ASCII one. What a group member wrote (an index row, a log line)
    must neither drive root's terminal nor reorder what it shows. Tabs stay (tables)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == "\t" else _escaped(c) for c in text)


def _lines(text: str) -> str:
    """:func:`printable` of each line of ``text``, the line breaks kept."""
    return "\n".join(printable(line) for line in text.split("\n"))


def excerpt(text: str, limit: int = SHOWN) -> str:
    """``text`` for a message: quoted, and cut (with its length) when it is long."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


class TrustdError(Exception):
    """Root of every error trustd raises on purpose."""

    reported = False  # True: another process (the root program) already told the user

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


MAX_MESSAGE = 1000


def report(command: str, exc: TrustdError, debug: bool) -> None:
    """Print ``<command>: <message>``, the hint indented below it, and with ``debug`` the
    chain of causes and the traceback (ADR 0003). Both the CLI and the root program use it."""
    import sys  # noqa: PLC0415

    message = exc.message
    if len(message) > MAX_MESSAGE:  # a message quoting a 5,000-character argument is cut
        message = f"{message[:MAX_MESSAGE]}... ({len(message)} characters)"
    # Each line with control characters escaped: a message may carry text another user
    # wrote (an index trigger's error, relayed from the lookup child; red team 6, I).
    print(f"{command}: {_lines(message)}", file=sys.stderr)
    for line in exc.hint.splitlines():
        print(f"  {printable(line)}", file=sys.stderr)
    if debug:
        cause: BaseException | None = exc.__cause__
        depth = 1
        while cause is not None:
            print(f"{'  ' * depth}└─{_lines(str(cause))}", file=sys.stderr)
            cause, depth = cause.__cause__, depth + 1
        _print_traceback(exc)


DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full_error(exc: OSError, where: str | None = None) -> LocalStateError:
    """A write that failed for want of space (or quota): a full disk, never "permissions"."""
    place = where or (str(exc.filename) if exc.filename is not None else None)
    if place is None:
        return LocalStateError(
            f"no space left on the device: {exc.strerror or exc}",
            hint="a file system trustd writes to is full (see df -h): free space there, "
            "then run again",
        )
    folder = str(PurePath(place).parent)
    return LocalStateError(
        f"cannot write {excerpt(place)}: {exc.strerror or 'no space left on device'}",
        hint=f"the file system holding {excerpt(folder)} is full: free space there "
        f"(df -h {excerpt(folder)}), then run again",
    )


def domain_error(exc: Exception) -> TrustdError | None:
    """Environmental failures that reached the top as a domain error, or None (a bug)."""
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
        name = excerpt(str(exc.filename or ""))
        return UserError(
            f"a name or path is longer than the system allows: {name}",
            hint="a file name is at most 255 bytes and a path 4096 (NAME_MAX, PATH_MAX); "
            "an image name at most 512 characters",
        )
    if isinstance(exc, RecursionError):
        return UserError(
            "the input is nested too deeply to read",
            hint="no file trustd reads needs more than a few levels of nesting",
        )
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return disk_full_error(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return LocalStateError(
            f"cannot use {excerpt(str(exc.filename))}: {exc.strerror or exc}",
            hint="check the path and its permissions (--debug shows where it was opened)",
        )
    return None


def _print_traceback(exc: BaseException) -> None:
    """The traceback, with ``--debug`` only: :mod:`traceback` (and :mod:`textwrap`) is loaded
    here, not for every report, so an error after a drop loads no module (red team 9: root's
    ``rkt image list``, dropped for good, loaded both to report a damaged index)."""
    import sys  # noqa: PLC0415
    import traceback  # noqa: PLC0415

    traceback.print_exception(exc, file=sys.stderr)


def report_internal(exc: BaseException, debug: bool) -> None:
    import sys  # noqa: PLC0415

    text = repr(exc)
    if len(text) > MAX_MESSAGE:
        text = f"{text[:MAX_MESSAGE]}... ({len(text)} characters)"
    print(f"rkt: internal error: {text}", file=sys.stderr)
    if debug:
        _print_traceback(exc)
    else:
        print("  run again with --debug for the traceback, and report it", file=sys.stderr)


def report_failure(command: str, exc: BaseException, debug: bool) -> None:
    """The whole error contract at the top of a process (the CLI and the root program): a
    domain error as ``<command>: <message>`` and its hint, an interrupt as such, an
    environmental failure converted (:func:`domain_error`), anything else as an internal
    error."""
    import sys  # noqa: PLC0415

    if isinstance(exc, TrustdError):
        if not exc.reported:
            report(command, exc, debug)
    elif isinstance(exc, KeyboardInterrupt):
        print(f"{command}: interrupted", file=sys.stderr)
    elif isinstance(exc, Exception) and (converted := domain_error(exc)) is not None:
        converted.__cause__ = exc
        report(command, converted, debug)
    else:
        report_internal(exc, debug)

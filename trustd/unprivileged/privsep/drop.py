"""Run one piece of work in a forked child that has dropped to the fetch identity.

rkt fetched as root when run as root (rkt #2482). trustd forks, the child drops to the
``rkt-fetch`` user (``nobody`` when that account does not exist) with group ``rkt`` only,
sets ``no_new_privs``, proves it cannot regain root, and only then touches the network or
parses archives. What crosses back is one JSON line: the result string, or the error's
class, message and hint. A child that dies without answering is an error, never a success.
"""

from __future__ import annotations

import fcntl
import grp
import importlib
import io
import json
import os
import pwd
import select
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from trustd.shared import errors
from trustd.shared._dataclass import frozen
from trustd.shared.errors import LocalStateError, TrustdError, printable
from trustd.shared.isolation import _libc

FETCH_USER = "rkt-fetch"
FALLBACK_USER = "nobody"
GROUP = "rkt"
RELAY_LIMIT = 64 << 10  # characters of a child's stderr relayed to the parent
# Seconds root waits for an index lookup child's answer: more than SQLite's 30 s wait for the
# index's write lock. The group writes the index: a trigger of its own can make the lookup
# compute for ever (red team 6, I); past this root kills the child and refuses.
LOOKUP_DEADLINE = 45
# Seconds root waits for any other store child (``image rm``, ``gc``, ``policy audit``): they
# remove blobs too, so more than a lookup, but not for ever. Holding the group's ``cas/lock``
# (an ``flock -s`` a member keeps), or a step SQLite cannot interrupt (replace() and instr()
# compare in O(n*m): minutes in one step), hung them for good (red team 8).
STORE_DEADLINE = 300


@frozen
class Identity:
    user: str
    uid: int
    gid: int


def fetch_identity() -> Identity:
    """The unprivileged identity root's fetches run as; refuses when group rkt is missing."""
    try:
        gid = grp.getgrnam(GROUP).gr_gid
    except KeyError as exc:
        raise LocalStateError(
            f'cannot drop privileges for the fetch: group "{GROUP}" does not exist',
            hint=f"create it: groupadd --system {GROUP} (make setup does this)",
        ) from exc
    for name in (FETCH_USER, FALLBACK_USER):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid != 0:
            return Identity(name, entry.pw_uid, gid)
    raise LocalStateError(
        f'cannot drop privileges for the fetch: neither "{FETCH_USER}" nor "{FALLBACK_USER}" '
        "exists",
        hint=f"create it: useradd --system --gid {GROUP} --no-create-home {FETCH_USER}",
    )


def require_reachable(path: Path, identity: Identity) -> None:
    """In the child: refuse with the reason and the fix when ``path`` (the data dir) sits
    below a directory the fetch identity may not search, e.g. a root-only 0700 parent.
    The child's own ``access(2)`` answers exactly; root changes no mode it does not own."""
    for directory in (*reversed(path.parents), path):
        if not os.access(directory, os.X_OK):
            raise LocalStateError(
                f"the fetch runs as {identity.user} (group {GROUP}), which cannot reach the "
                f"data directory {path}: {directory} is not searchable by it",
                hint=f"let group {GROUP} search {directory} (chgrp {GROUP} and chmod g+x), "
                "or use a --dir outside root-only directories",
            )


def _drop(identity: Identity) -> None:
    os.setgroups([identity.gid])
    os.setgid(identity.gid)
    os.setuid(identity.uid)
    _libc.prctl(_libc.PR_SET_NO_NEW_PRIVS, 1)  # OSError when it cannot be set
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:  # pragma: no cover - the kernel said we are still root: stop
        raise RuntimeError("privileges were not dropped")
    os.umask(0o007)


def _die_with(parent: int) -> None:
    """Be killed when ``parent`` (root's ``rkt``) dies: a child left running after root's
    ``rkt`` was killed went on computing and holding the store's locks (red team 8). Set
    after the drop, since a change of credentials clears it; a parent already gone by then
    is seen by ``getppid``."""
    _libc.prctl(_libc.PR_SET_PDEATHSIG, signal.SIGKILL)  # OSError when it cannot be set
    if os.getppid() != parent:
        os._exit(1)


def _child(
    identity: Identity, work: Callable[[], str], fd: int, *, relay: bool, parent: int
) -> None:
    """Drop, run ``work``, write the one answer line. With ``relay``, what the work writes to
    ``sys.stderr`` (an index row's warning) goes back in the answer, cut at
    :data:`RELAY_LIMIT`, for the parent to print: the child never writes to root's stderr,
    so a closed or broken one cannot fail the work."""
    captured = io.StringIO()
    if relay:
        sys.stderr = captured
    try:
        _drop(identity)
        _die_with(parent)
        payload: dict[str, str] = {"ok": work()}
    except TrustdError as exc:
        payload = {"error": type(exc).__name__, "message": exc.message, "hint": exc.hint}
    except BaseException as exc:  # noqa: BLE001 - everything must cross back as data
        payload = {"error": "TrustdError", "message": f"fetch process failed: {exc!r}"}
    if text := captured.getvalue():
        payload["stderr"] = text[:RELAY_LIMIT]
        if len(text) > RELAY_LIMIT:
            payload["stderr"] += f"\n({len(text) - RELAY_LIMIT} more characters of warnings cut)"
    os.write(fd, json.dumps(payload).encode() + b"\n")


def _relay(payload: dict[str, str]) -> None:
    """The child's relayed stderr on ours, each line with control characters escaped (the
    group may have written it, e.g. an index row's name)."""
    text = payload.get("stderr")
    if isinstance(text, str):
        for line in text.splitlines():
            print(printable(line), file=sys.stderr)


def _rebuild(payload: dict[str, str]) -> TrustdError:
    cls = getattr(errors, payload.get("error", ""), TrustdError)
    if not (isinstance(cls, type) and issubclass(cls, TrustdError)):
        cls = TrustdError
    try:
        return cls(payload.get("message", "fetch failed"), hint=payload.get("hint", ""))
    except TypeError:  # a subclass with its own constructor
        return TrustdError(payload.get("message", "fetch failed"), hint=payload.get("hint", ""))


# Code the child may need, loaded before the fork: after dropping privileges the child may
# not be able to read the Python installation (e.g. under /root), and it should not load
# code from disk as another user anyway.
PRELOAD = (
    "encodings.idna",
    "http.client",
    "ssl",
    "hashlib",
    "base64",
    "json",
    "html.parser",
    "tarfile",
    "gzip",
    "bz2",
    "lzma",
    "sqlite3",
    "shutil",
    "subprocess",
    "tempfile",
    "fcntl",
)


# What a child that only reads or updates the store index needs beyond its own modules.
INDEX_PRELOAD = (
    "json",
    "sqlite3",
    "fcntl",
    "shutil",
    "subprocess",
    "tempfile",
    "hashlib",
    "encodings.idna",
)
# What ``rkt image list`` needs beyond its own modules: it reads the index and prints, so
# none of the hashing, copying and scratch files (OpenSSL's start alone ~6 ms, issue #14).
# tests/integration/test_image_list_drop.py shows that it loads nothing after the drop.
LISTING_PRELOAD = ("json", "sqlite3", "fcntl")


def close_inherited() -> None:
    """Close every descriptor above 2 without close-on-exec: those ``rkt``'s caller left
    open (``rkt fetch 9</etc``, a service manager's), which root holds and which must not
    reach the child parsing what the network sent (red team 5; the root program closes
    them at its entry too). What this process opened itself, the local sources included, is
    close-on-exec (PEP 446) and stays."""
    for name in os.listdir("/proc/self/fd"):  # noqa: PTH208 - the kernel's fd table
        fd = int(name)
        if fd > 2:
            try:
                if not fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC:
                    os.close(fd)
            except OSError:  # the listing's own fd, gone by now
                continue


def _close_all_but(keep: int) -> None:
    """Close every descriptor above 2 except ``keep``: root's own (a lock it holds, a
    directory fd of its private state) must not reach the unprivileged child."""
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))


def drop_for_good(
    identity: Identity, preload: tuple[str, ...] = (), *, base: tuple[str, ...] = INDEX_PRELOAD
) -> None:
    """Become ``identity`` in this process, for the rest of its life: what :func:`run_as`'s
    child does before its work (the modules loaded first, every descriptor above 2 closed,
    the same drop, ``no_new_privs`` and proof that root is gone), without the fork, the
    answer pipe and its JSON (issue #14). Only for a verb whose last step is the group's
    work, with nothing left to do as root afterwards (``rkt image list``): the process can
    never be root again, and what it prints it prints unprivileged."""
    for module in (*base, *preload):
        importlib.import_module(module)
    sys.stdout.flush()
    sys.stderr.flush()
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    _drop(identity)


def _answer(fd: int, most: int, deadline: float | None) -> bytes:
    """Up to ``most`` bytes from ``fd`` until its end; TimeoutError once ``deadline``
    seconds have passed without the end (None: wait as long as it takes)."""
    if deadline is None:
        with os.fdopen(os.dup(fd), "rb") as pipe:
            return pipe.read(most)
    import time  # noqa: PLC0415

    end = time.monotonic() + deadline
    chunks: list[bytes] = []
    left = most
    while left > 0:
        wait = end - time.monotonic()
        poll = select.poll()
        poll.register(fd, select.POLLIN)
        if wait <= 0 or not poll.poll(wait * 1000):
            raise TimeoutError
        chunk = os.read(fd, min(left, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def run_as(
    identity: Identity,
    work: Callable[[], str],
    preload: tuple[str, ...] = (),
    *,
    inherit_fds: bool = True,
    base: tuple[str, ...] = PRELOAD,
    limit: int = 1 << 20,
    deadline: float | None = None,
) -> str:
    """Run ``work`` in a child as ``identity``; return its string result or raise its error.

    ``inherit_fds=False`` closes every descriptor but the answer pipe first (work that opens
    what it needs itself, e.g. the store index), and relays what the work writes to stderr
    through the answer (:func:`_child`); a fetch keeps the sources root opened.
    ``base``: the modules every such child gets (a fetch's by default; an index lookup
    passes :data:`INDEX_PRELOAD` and its own, issue #14). ``limit``: the most bytes of answer
    read (a listing of many images passes more). ``deadline``: the most seconds to wait for
    the whole answer (an index lookup's, :data:`LOOKUP_DEADLINE`); past it the child is
    killed and the lookup refused."""
    for module in (*base, *preload):
        importlib.import_module(module)
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, measured by the integration tests
        os.close(read_fd)
        if not inherit_fds:
            _close_all_but(write_fd)
        else:
            close_inherited()  # the answer pipe is close-on-exec: kept
        try:
            _child(identity, work, write_fd, relay=not inherit_fds, parent=parent)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
    os.close(write_fd)
    try:
        data = _answer(read_fd, limit + 1, deadline)
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise LocalStateError(
            f"the unprivileged store process did not answer within {deadline:g} s; "
            "it was stopped and nothing was used",
            hint="a member of group rkt may hold the store's lock (see: fuser -v "
            "<dir>/cas/lock) or have made the index compute for ever (a trigger or view of "
            "theirs; look: sqlite3 <dir>/cas/db/index.sqlite .schema, and drop what trustd "
            "did not make)",
        ) from None
    finally:
        os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    if len(data) > limit:
        raise LocalStateError(
            f"the unprivileged fetch process answered with more than {limit} bytes",
            hint="nothing was used; a member of group rkt may have filled the store index",
        )
    if not data:
        how = (
            f"was killed by signal {signal.Signals(os.WTERMSIG(status)).name}"
            if os.WIFSIGNALED(status)
            else f"exited with {os.waitstatus_to_exitcode(status)}"
        )
        raise LocalStateError(
            f"the unprivileged fetch process {how} without a result",
            hint="nothing was stored; run again with --debug",
        )
    payload = json.loads(data)
    _relay(payload)
    if "ok" in payload:
        return str(payload["ok"])
    raise _rebuild(payload)

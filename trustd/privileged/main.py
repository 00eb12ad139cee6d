"""The root program: ``python -I -m trustd.privileged.main --request-fd N`` (ADR 0010).

``rkt`` execs this after the unprivileged side did its part. Before anything else it:

1. refuses to run unless it is root (it is nobody's setuid helper);
2. reads one request from fd ``N``, at most :data:`~trustd.shared.request.MAX_REQUEST_BYTES`;
3. closes every other inherited descriptor above 2 (``rkt run 9</etc`` gives nothing away:
   the runc CVE-2024-21626 class), fixes its umask, scrubs its environment to an allow-list
   and makes itself non-dumpable (so are the stage1 processes it forks);
4. decodes the request strictly (:mod:`trustd.shared.request`) and runs its handler.

It never imports the unprivileged side or a network client (import-linter contracts and
``tests/integration/test_root_program.py``). Every failure is ``<command>: <message>`` plus the
hint and exit 254.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from trustd.privileged.executor._linux import close_from
from trustd.shared._stdio import standard_fds_open
from trustd.shared.errors import UserError, report_failure
from trustd.shared.isolation.dumpable import set_undumpable
from trustd.shared.request import MAX_REQUEST_BYTES, ROOT_ENVIRONMENT, ROOT_PATH, decode

EXIT_ERROR = 254


def _require_root() -> None:
    if os.geteuid() != 0:
        raise UserError("cannot run as unprivileged user", hint="run rkt as root (sudo)")


def _request_fd(argv: Sequence[str]) -> int:
    if len(argv) != 2 or argv[0] != "--request-fd" or not argv[1].isdigit():
        raise UserError(
            "usage: python -I -m trustd.privileged.main --request-fd N",
            hint="the root program is entered through rkt only",
        )
    return int(argv[1])


def _read_request(fd: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_REQUEST_BYTES:
                raise UserError(f"request over {MAX_REQUEST_BYTES} bytes refused")
    except OSError as exc:
        raise UserError(f"cannot read the request from fd {fd}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    return b"".join(chunks)


def _close_inherited() -> None:
    """Close every descriptor above 2 (close_range(2) where the kernel has it), then become
    non-dumpable, checked (fail closed): the executor's and isolation's own calls, not a
    libc handle of this module's."""
    close_from(3)
    set_undumpable()


def _scrub_environment() -> None:
    kept = {k: os.environ[k] for k in ROOT_ENVIRONMENT if k in os.environ}
    os.environ.clear()
    os.environ.update(kept, PATH=ROOT_PATH)
    os.umask(0o022)


def run(argv: Sequence[str]) -> int:
    """Steps 1-4 of the module docstring; returns the exit status."""
    command, debug = "rkt", False
    standard_fds_open()  # a closed 0-2 is /dev/null, never the next file root opens
    try:
        _require_root()
        data = _read_request(_request_fd(argv))
        _close_inherited()
        _scrub_environment()
        envelope = decode(data)
        command, debug = envelope.command, envelope.debug
        from trustd.privileged.handlers import handle  # noqa: PLC0415

        return handle(envelope)
    except BrokenPipeError:  # the reader went away (``rkt gc | head -1``): nobody to tell
        _stdout_gone()
        return EXIT_ERROR
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the error contract
        report_failure(command, exc, debug)
        return EXIT_ERROR


def _stdout_gone() -> None:
    """Point fd 1 at /dev/null so the flush at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:  # pragma: no cover - /dev/null is always there for root
        pass


def main() -> None:  # pragma: no cover - the process entry; tests run it as a program
    status = run(sys.argv[1:])
    try:
        sys.stdout.flush()
    except OSError:  # a closed pipe: the answer is lost, the status says so
        _stdout_gone()
        status = status or EXIT_ERROR
    sys.stderr.flush()
    # Every file the handlers wrote is closed (and fsynced where it matters) by now: skip the
    # interpreter's teardown (module and object finalisation), which took a third of a pod
    # start (issue #14).
    os._exit(status)


if __name__ == "__main__":  # pragma: no cover
    main()

"""Handing a request to the root program (ADR 0010): the front end's one way into root work.

``rkt`` (run by root) has done the unprivileged part: names and ID prefixes resolved to full
store keys, missing images fetched in the privsep child. It then writes one encoded
:class:`~trustd.shared.request.Envelope` to a memfd and execs a fresh
``python -I -m trustd.privileged.main --request-fd N`` with an allow-listed environment. The
new interpreter loads none of the modules this process did (ssl, http.client, the fetch side).
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import NoReturn

from trustd.shared.config import GlobalOptions
from trustd.shared.errors import TrustdError, UserError
from trustd.shared.request import (
    ENTRY_MODULE,
    ROOT_ENVIRONMENT,
    ROOT_PATH,
    VERSION,
    Dirs,
    Envelope,
    Request,
    encode,
)


def require_root() -> None:
    if os.geteuid() != 0:
        raise UserError("cannot run as unprivileged user", hint="run it as root (sudo)")


def _prepare(options: GlobalOptions, command: str, request: Request) -> tuple[list[str], int]:
    require_root()
    d = options.dirs
    envelope = Envelope(
        version=VERSION,
        command=command,
        dirs=Dirs(str(d.system_config), str(d.local_config), str(d.data)),
        request=request,
        debug=options.debug,
        insecure=options.insecure,
    )
    data = encode(envelope)
    fd = os.memfd_create("trustd-request", 0)  # inherited by the root program, read once
    os.set_inheritable(fd, True)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    argv = [sys.executable, "-I", "-m", ENTRY_MODULE, "--request-fd", str(fd)]
    return argv, fd


def _environment() -> dict[str, str]:
    env = {k: os.environ[k] for k in ROOT_ENVIRONMENT if k in os.environ}
    env["PATH"] = ROOT_PATH
    return env


def exec_root(options: GlobalOptions, command: str, request: Request) -> NoReturn:
    """Become the root program for ``request``: its exit status is this command's."""
    argv, _fd = _prepare(options, command, request)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, _environment())  # noqa: S606 - a fixed argv, no shell


class RootProgramFailed(TrustdError):
    """The root program failed and has said why on stderr: nothing more is printed."""

    reported = True

    def __init__(self, command: str, status: int) -> None:
        super().__init__(f"{command}: the root program exited with status {status}")
        self.status = status


def _run(options: GlobalOptions, command: str, request: Request, *, capture: bool) -> str:
    argv, fd = _prepare(options, command, request)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        done = subprocess.run(  # noqa: S603 - a fixed argv, no shell
            argv,
            pass_fds=(fd,),
            env=_environment(),
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else None,
            text=True,
        )
    finally:
        os.close(fd)
    if done.returncode != 0:
        raise RootProgramFailed(command, done.returncode)
    return done.stdout if capture else ""


def call_root(options: GlobalOptions, command: str, request: Request) -> None:
    """Run the root program for ``request`` as a child, for a step that is not the last
    (or where this process must stay, as in-process tests call the CLI); its failure has
    been reported by it and ends this command with 254."""
    _run(options, command, request, capture=False)


def query_root(options: GlobalOptions, command: str, request: Request) -> str:
    """As :func:`call_root`, for a request whose answer the root program prints: its
    stdout."""
    return _run(options, command, request, capture=True)

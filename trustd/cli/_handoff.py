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
from trustd.shared.errors import UserError
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


def call_root(options: GlobalOptions, command: str, request: Request) -> int:
    """Run the root program for ``request`` as a child; return its exit status."""
    argv, fd = _prepare(options, command, request)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        return subprocess.run(argv, pass_fds=(fd,), env=_environment(), check=False).returncode  # noqa: S603
    finally:
        os.close(fd)

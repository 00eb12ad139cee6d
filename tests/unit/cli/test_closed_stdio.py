"""A process started with a standard descriptor closed (``rkt version >&-``): it neither
crashes at exit nor gives that number to the next file it opens (trustd/shared/_stdio.py)."""

from __future__ import annotations

import subprocess
import sys

_ENTRY = "import sys; sys.argv = ['rkt', 'version']; from trustd.cli.main import entry; entry()"
_PROBE = (
    "import os, sys; from trustd.shared._stdio import standard_fds_open; standard_fds_open(); "
    "fd = os.open('/dev/zero', os.O_RDONLY); print('x'); "
    'sys.stderr.write(f\'{fd} {os.readlink("/proc/self/fd/1")} {os.readlink("/proc/self/fd/2")}\')'
)


def _shell(python_code: str, redirections: str) -> subprocess.CompletedProcess[str]:
    command = f'exec "$0" -c "$1" {redirections}'
    return subprocess.run(
        ["/bin/sh", "-c", command, sys.executable, python_code],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_rkt_with_stdout_closed_exits_cleanly() -> None:
    done = _shell(_ENTRY, ">&-")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and done.stderr == ""


def test_a_closed_descriptor_is_dev_null_not_the_next_file() -> None:
    done = _shell(_PROBE, ">&-")
    assert done.returncode == 0, done.stderr
    fd, one, two = done.stderr.split()
    assert int(fd) >= 3  # the file did not take fd 1
    assert one == "/dev/null" and two.startswith(("pipe:", "/"))
    both = _shell(_PROBE.replace("sys.stderr.write", "open('/dev/null', 'w').write"), ">&- 2>&-")
    assert both.returncode == 0 and both.stdout == ""

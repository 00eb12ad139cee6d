"""Non-dumpable processes: no core dump, and no other process of the same uid (an app running
as root in its pod, say) may ptrace it or open its ``/proc/<pid>/{exe,environ,mem,fd}``
without CAP_SYS_PTRACE. Every stage1 helper and the metadata service set it first thing;
an exec resets it, so an app's own process is dumpable again (issue #10, class 11).
"""

from __future__ import annotations

from trustd.shared.errors import PolicyViolationError
from trustd.shared.isolation import _libc


def set_undumpable() -> None:
    """``prctl(PR_SET_DUMPABLE, 0)``, checked; fail closed."""
    try:
        _libc.prctl(_libc.PR_SET_DUMPABLE, 0)
        dumpable = _libc.prctl(_libc.PR_GET_DUMPABLE)
    except OSError as exc:
        raise PolicyViolationError(
            f"cannot make the process non-dumpable: {exc.strerror}",
            hint="this kernel must support PR_SET_DUMPABLE",
        ) from exc
    if dumpable != 0:
        raise PolicyViolationError(
            "PR_SET_DUMPABLE did not take effect", hint="check the kernel's prctl support"
        )

"""``no_new_privs``: once set, no exec can gain privileges (setuid bits, file capabilities).

It is inherited across fork and exec and can never be cleared, so it is set in the child right
before exec. A seccomp filter cannot be loaded by an unprivileged process without it.
"""

from __future__ import annotations

from trustd.shared.errors import PolicyViolationError
from trustd.shared.isolation import _libc


def no_new_privs() -> bool:
    """Whether ``no_new_privs`` is set for the calling thread."""
    try:
        return _libc.prctl(_libc.PR_GET_NO_NEW_PRIVS) == 1
    except OSError as exc:
        raise PolicyViolationError(
            f"cannot read no_new_privs: {exc.strerror}",
            hint="this kernel must support PR_GET_NO_NEW_PRIVS (Linux >= 3.5)",
        ) from exc


def set_no_new_privs() -> None:
    """Set ``no_new_privs`` for the calling thread and check it took; raise if it did not."""
    try:
        _libc.prctl(_libc.PR_SET_NO_NEW_PRIVS, 1)
    except OSError as exc:
        raise PolicyViolationError(
            f"cannot set no_new_privs: {exc.strerror}",
            hint="this kernel must support PR_SET_NO_NEW_PRIVS (Linux >= 3.5)",
        ) from exc
    if not no_new_privs():
        raise PolicyViolationError(
            "no_new_privs did not take effect", hint="check the kernel's prctl support"
        )

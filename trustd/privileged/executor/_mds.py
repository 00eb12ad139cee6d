"""Dropping to the metadata service's account (issue #10, class 11; ADR 0025).

``rkt metadata-service`` (_mdsd.py) binds its sockets as root, then drops everything a root
process holds -- the bounding set, ambient, permitted and effective capabilities,
supplementary groups -- becomes ``rkt-mds`` (scripts/setup-groups.sh), sets no_new_privs and
execs ``python -I -m trustd.unprivileged.mds --daemon``; the attestation daemon drops the same
way. The root program never imports the service's code. (The in-pod server that an init
started here is gone: a ``--mds-register`` pod needs the host daemon, as in rkt.)
"""

from __future__ import annotations

import errno
import os
import pwd
import signal

from trustd.shared.errors import LocalStateError, PolicyViolationError
from trustd.shared.isolation import _libc, set_no_new_privs

MDS_PORT = 18112  # appc's; trustd.unprivileged.mds serves whatever socket it is given
MDS_USER = "rkt-mds"
MDS_MODULE = "trustd.unprivileged.mds"  # exec'ed by name: the root program never imports it


def service_ids(user: str, role: str, hint: str) -> tuple[int, int]:
    """The uid and gid of ``user``, the account ``role`` drops to; neither may be 0."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise LocalStateError(f"{role} account {user!r} does not exist", hint=hint) from None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise LocalStateError(f"account {user!r} must not be uid or gid 0")
    return entry.pw_uid, entry.pw_gid


def mds_ids() -> tuple[int, int]:
    return service_ids(
        MDS_USER,
        "the metadata service's",
        "create it: bash scripts/setup-groups.sh (or: make setup)",
    )


def _each_cap(option: int) -> list[int]:
    """``prctl(option, nr)`` for every capability the kernel knows (EINVAL past the last)."""
    out = []
    for nr in range(64):
        try:
            out.append(_libc.prctl(option, nr))
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            break
    return out


CAP_DAC_READ_SEARCH = 2
PR_SET_KEEPCAPS = 8


def drop_to(uid: int, gid: int) -> None:
    """Become ``uid``:``gid`` with an empty bounding set, no ambient or inheritable
    capability and no_new_privs, keeping only CAP_DAC_READ_SEARCH in the effective set until
    the exec (the interpreter may sit under a root-only directory, as it does here under
    /root/.pyenv). The exec of a file without file capabilities by a non-root uid leaves
    the new program no capability at all; the service checks that first thing."""
    _each_cap(_libc.PR_CAPBSET_DROP)  # needs CAP_SETPCAP: drop the bounding set while root
    _libc.prctl(_libc.PR_CAP_AMBIENT, _libc.PR_CAP_AMBIENT_CLEAR_ALL)
    _libc.prctl(PR_SET_KEEPCAPS, 1)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    keep = 1 << CAP_DAC_READ_SEARCH
    _libc.capset(_libc.CapState(keep, keep, 0))
    _libc.prctl(PR_SET_KEEPCAPS, 0)
    set_no_new_privs()
    _libc.prctl(_libc.PR_SET_PDEATHSIG, signal.SIGKILL)  # cleared by setresuid: set it after
    held = _libc.capget()
    if held.permitted != keep or held.inheritable or any(_each_cap(_libc.PR_CAPBSET_READ)):
        raise PolicyViolationError("the metadata service still holds capabilities")
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups():
        raise PolicyViolationError("the metadata service did not drop to its account")

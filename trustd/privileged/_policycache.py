"""Root's cache of the compiled policy: ``<data-dir>/private/policy.cache`` (issue #14).

``private/`` is root's alone (``0700 root:root``, checked by
:func:`~trustd.privileged.treestore.datadir.open_data_dir`, every ancestor too); the file is
opened by fd beneath it, following no symlink, and used only when it is a regular file of
root's that nobody else may write. What the cache holds is keyed by the digest of the policy
file's bytes, which the loader recomputes every time: a member of group rkt can change
neither the cache nor, through it, which policy decides.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from trustd.privileged import _dirfd
from trustd.privileged.treestore.datadir import open_data_dir
from trustd.shared.errors import LocalStateError

CACHE_NAME = "policy.cache"
MAX_CACHE_BYTES = 8 << 20  # the policy file is at most 1 MiB; its JSON form is a few times that


class RootPolicyCache:
    """:class:`~trustd.shared.policy._compiled.PolicyCache` in root's ``private/``."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir

    def read(self) -> bytes | None:
        with open_data_dir(self._data_dir) as data:
            try:
                fd = _dirfd.open_beneath(data.private_fd, CACHE_NAME, os.O_RDONLY | os.O_NONBLOCK)
            except FileNotFoundError:
                return None
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
                    raise LocalStateError(
                        f"{data.private}/{CACHE_NAME} is not a regular file of root's that "
                        f"only root can write (uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o})",
                        hint=f"remove it (rm {data.private}/{CACHE_NAME}); it is re-created",
                    )
                if st.st_size > MAX_CACHE_BYTES:
                    return None
                cached = os.read(fd, MAX_CACHE_BYTES + 1)
                return cached if len(cached) <= MAX_CACHE_BYTES else None
            finally:
                os.close(fd)

    def write(self, data: bytes) -> None:
        if len(data) > MAX_CACHE_BYTES:
            return
        with open_data_dir(self._data_dir) as dd, contextlib.suppress(OSError):
            # Only an optimisation: a data dir that cannot take it just parses every time.
            _dirfd.write_file_at(dd.private_fd, CACHE_NAME, data, 0o600)

"""``rkt image list`` run by root reads the group-writable index as the fetch identity, never
as root (issue #14: the listing's own process drops for good instead of forking a child).

A member of group rkt puts an index only it may read in the index's place; root could still read it,
the fetch identity cannot, so a listing that fails (and says which file) was not root's.
"""

from __future__ import annotations

import pwd

from tests.conftest import ConfigDirs
from tests.integration._attacker import member
from tests.integration.conftest import rkt


def test_root_lists_the_index_only_with_the_fetch_identitys_rights(
    shared_dirs: ConfigDirs, image: str
) -> None:
    index = shared_dirs.data / "cas/db/index.sqlite"
    listed = rkt(shared_dirs, "image", "list", "--no-legend", check=True)
    assert image[:19] in listed.stdout
    # the member puts a copy only it may read in the index's place (the group writes cas/db)
    member(
        "sh", "-c", 'cp "$1" "$1.new" && chmod 0600 "$1.new" && mv "$1.new" "$1"', "-", str(index)
    )
    assert pwd.getpwuid(index.stat().st_uid).pw_name != "rkt-fetch"
    refused = rkt(shared_dirs, "image", "list", "--no-legend")
    assert refused.returncode == 254
    assert image[:19] not in refused.stdout
    assert "index.sqlite" in refused.stderr
    member("chmod", "0660", str(index))
    assert image[:19] in rkt(shared_dirs, "image", "list", "--no-legend", check=True).stdout

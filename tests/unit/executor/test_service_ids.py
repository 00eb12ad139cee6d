"""The accounts the metadata service and the attester drop to (``_mds.service_ids``)."""

from __future__ import annotations

import os
import pwd

import pytest

from trustd.privileged.executor._mds import service_ids
from trustd.shared.errors import LocalStateError


def test_a_missing_account_is_named_with_the_fix() -> None:
    with pytest.raises(LocalStateError, match="the attester's account 'rkt-no-such'") as caught:
        service_ids("rkt-no-such", "the attester's", "create it: make setup")
    assert caught.value.hint == "create it: make setup"


def test_an_account_of_uid_or_gid_0_is_refused() -> None:
    with pytest.raises(LocalStateError, match="'root' must not be uid or gid 0"):
        service_ids("root", "the metadata service's", "")


def test_an_account_gives_its_ids() -> None:
    entry = pwd.getpwuid(os.getuid()) if os.getuid() else pwd.getpwnam("nobody")
    assert service_ids(entry.pw_name, "x", "") == (entry.pw_uid, entry.pw_gid)

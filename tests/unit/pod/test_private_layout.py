"""The pod's root-only part: refused when it is missing (old layout), a symlink, or loose."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trustd.privileged.pod import Pod
from trustd.shared.errors import LocalStateError


def _pod(tmp_path: Path) -> Pod:
    path = tmp_path / "pods/run/0f3c"
    path.mkdir(parents=True)
    return Pod("0f3c", path)


def test_a_pod_in_the_old_layout_is_refused_with_a_hint(tmp_path: Path) -> None:
    pod = _pod(tmp_path)
    (pod.path / "plan.json").write_text("{}")
    assert pod.legacy()
    with pytest.raises(LocalStateError) as err:
        pod.check_private()
    assert "old layout" in err.value.message and "rkt rm 0f3c" in err.value.hint


def test_a_symlinked_private_dir_is_not_followed(tmp_path: Path) -> None:
    pod = _pod(tmp_path)
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (pod.path / "private").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(LocalStateError, match="must be a directory"):
        pod.check_private()


@pytest.mark.parametrize("mode", [0o750, 0o755, 0o770, 0o701])
def test_a_private_dir_others_may_enter_is_refused(tmp_path: Path, mode: int) -> None:
    pod = _pod(tmp_path)
    (pod.path / "private").mkdir()
    os.chmod(pod.path / "private", mode)  # noqa: PTH101 - the exact mode, not umask'd
    with pytest.raises(LocalStateError, match="0700 root:root"):
        pod.check_private()

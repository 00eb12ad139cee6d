"""Files root writes where its caller asked: never through a planted link, never into a
directory other users can change, nothing left behind when the write fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trustd.privileged._output import output_dir, output_file, write_output
from trustd.shared.errors import UserError


def test_a_symlink_at_the_name_is_replaced_never_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    (tmp_path / "out").symlink_to(victim)
    write_output(tmp_path / "out", b"data")
    assert not victim.exists()
    assert not (tmp_path / "out").is_symlink()
    assert (tmp_path / "out").read_bytes() == b"data"


def test_a_directory_other_users_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(UserError, match="other users can change"):
        write_output(shared / "out", b"data")
    assert list(shared.iterdir()) == []


def test_a_sticky_directory_is_fine(tmp_path: Path) -> None:
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    write_output(sticky / "out", b"data")
    assert (sticky / "out").read_bytes() == b"data"


def test_a_failed_write_leaves_nothing_and_the_old_file_stays(tmp_path: Path) -> None:
    (tmp_path / "out").write_bytes(b"old")
    with pytest.raises(RuntimeError), output_file(tmp_path / "out", overwrite=True) as out:
        out.write(b"half")
        raise RuntimeError("the export failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (tmp_path / "out").read_bytes() == b"old"


def test_an_existing_file_needs_overwrite(tmp_path: Path) -> None:
    (tmp_path / "out").write_bytes(b"old")
    with pytest.raises(UserError, match="already exists"):
        write_output(tmp_path / "out", b"new", overwrite=False)


def test_an_output_directory_is_never_a_link(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "bundle").symlink_to(target)
    with pytest.raises(UserError, match="not a directory"):
        output_dir(tmp_path / "bundle")
    assert output_dir(tmp_path / "fresh").is_dir()
    assert (tmp_path / "fresh").stat().st_uid == os.geteuid()

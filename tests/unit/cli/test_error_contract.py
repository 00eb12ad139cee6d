"""The CLI's error contract: every failure is exit 254 with a message, never a traceback
unless ``--debug`` is given (CONVENTIONS 8; issue #10, class 12)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ConfigDirs
from trustd.cli import version
from trustd.cli.main import main

RKT = str(Path(sys.executable).with_name("rkt"))


def _rkt(
    dirs: ConfigDirs, *args: str, stdout: int | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RKT, *dirs.flags(), *args],
        stdout=subprocess.PIPE if stdout is None else stdout,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def _deep_policy(path: Path, depth: int = 1000) -> Path:
    path.write_text(f"version = 1\n[default]\nmode = {'[' * depth}{']' * depth}\n")
    return path


def test_a_policy_nested_1000_deep_is_a_policy_error_naming_the_file(
    config_dirs: ConfigDirs, tmp_path: Path
) -> None:
    deep = _deep_policy(tmp_path / "deep.toml")
    result = _rkt(config_dirs, "policy", "check", str(deep))
    assert result.returncode == 254
    assert f"check: policy {deep}: (top level): nested too deeply" in result.stderr
    assert "Traceback" not in result.stderr
    debug = _rkt(config_dirs, "--debug", "policy", "check", str(deep))
    assert debug.returncode == 254 and "Traceback" in debug.stderr


def test_the_policy_in_force_nested_too_deeply_stops_every_gate(
    config_dirs: ConfigDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    _deep_policy(config_dirs.local / "policy.toml")
    assert main([*config_dirs.flags(), "policy", "explain", "example.com/app"]) == 254
    err = capsys.readouterr().err
    assert "nested too deeply" in err and str(config_dirs.local / "policy.toml") in err


def test_a_5000_character_image_name_is_refused_with_the_limit(
    config_dirs: ConfigDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "example.com/" + "a" * 5000
    assert main([*config_dirs.flags(), "fetch", name]) == 254
    err = capsys.readouterr().err
    assert "5012 characters long (at most 512)" in err
    assert len(err) < 1000  # the name is cut, not repeated whole
    assert "Traceback" not in err


def test_a_path_over_name_max_is_a_user_error_not_enametoolong(
    config_dirs: ConfigDirs, tmp_path: Path
) -> None:
    long_dir = tmp_path / ("d" * 300)
    result = _rkt(config_dirs, f"--dir={long_dir}", "list")
    assert result.returncode == 254
    assert "list: a name or path is longer than the system allows" in result.stderr
    assert "NAME_MAX" in result.stderr
    assert "Traceback" not in result.stderr and "OSError" not in result.stderr


def test_attest_verify_with_a_missing_ak_names_the_file(
    config_dirs: ConfigDirs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "bundle.json"
    bundle.write_text("{}")
    missing = tmp_path / "MISSING"
    code = main(
        [
            *config_dirs.flags(),
            "attest",
            "verify",
            "--ak",
            str(missing),
            "--nonce",
            "00",
            str(bundle),
        ]
    )
    assert code == 254
    err = capsys.readouterr().err
    assert f"verify: the attestation key (--ak) {missing}: no such file" in err


@pytest.mark.parametrize("pcrs", ["a,b", "1,,2", "99"])
def test_a_bad_pcr_list_is_a_usage_error(
    config_dirs: ConfigDirs, tmp_path: Path, pcrs: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "q")
    code = main(
        [*config_dirs.flags(), "attest", "quote", "--pcrs", pcrs, "--nonce", "00", "--out", out]
    )
    assert code == 254
    err = capsys.readouterr().err
    assert "--pcrs" in err and "ValueError" not in err


def test_stdout_closed_by_the_reader_ends_quietly(config_dirs: ConfigDirs) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before rkt writes a byte (like `| head -c0`)
    try:
        result = _rkt(config_dirs, "policy", "schema", stdout=write_end)
    finally:
        os.close(write_end)
    assert result.returncode == 254
    assert result.stderr == ""  # no traceback, no "Exception ignored" at exit


def test_a_bug_is_an_internal_error_with_the_traceback_only_under_debug(
    config_dirs: ConfigDirs, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug cannot be provoked on purpose, so one is planted in ``rkt version``."""

    def broken(_args: object) -> int:
        table: dict[str, int] = {}
        return table["missing"]

    monkeypatch.setattr(version, "run", broken)
    assert main(["version"]) == 254
    err = capsys.readouterr().err
    assert "rkt: internal error: KeyError('missing')" in err
    assert "--debug" in err and "Traceback" not in err
    assert main(["--debug", "version"]) == 254
    assert "Traceback" in capsys.readouterr().err

"""``rkt attest policy-schema`` and the usage errors of ``verify`` (offline vs --remote)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ConfigDirs
from tests.unit.attest._vectors import SWTPM
from trustd.cli.main import main


def test_policy_schema_prints_the_verifier_policy_schema(
    config_dirs: ConfigDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*config_dirs.flags(), "attest", "policy-schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["additionalProperties"] is False
    assert "require_hardware_tpm" in schema["properties"] and "BootPolicy" in schema["$defs"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--remote", "https://127.0.0.1:1", "--nonce", "00" * 16], "takes no bundle"),
        (["some-bundle"], "needs a bundle and its --nonce, or --remote"),
        (["--remote", "http://127.0.0.1:1"], "is not an https:// URL"),
    ],
)
def test_verify_usage_errors(
    config_dirs: ConfigDirs,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    ak = tmp_path / "ak.pem"
    ak.write_bytes((SWTPM / "ak.pub.pem").read_bytes())
    status = main([*config_dirs.flags(), "attest", "verify", "--ak", str(ak), *args])
    captured = capsys.readouterr()
    assert status == 254
    assert message in captured.err + captured.out

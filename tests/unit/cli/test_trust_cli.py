"""``rkt trust`` as a user meets it: rkt's messages, exit 254, and an unchanged keystore."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ConfigDirs, Keys, snapshot
from trustd.cli.main import main


def rkt(dirs: ConfigDirs, *args: str) -> int:
    return main([*dirs.flags(), *args])


@pytest.fixture
def keyfile(tmp_path: Path, keys: Keys) -> Path:
    path = tmp_path / "good.asc"
    path.write_bytes(keys.public(keys.good))
    return path


def test_trust_prefix_adds_key_at_rkt_path(
    config_dirs: ConfigDirs, keys: Keys, keyfile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = rkt(
        config_dirs,
        "trust",
        "--prefix",
        "example.com/app",
        "--skip-fingerprint-review",
        str(keyfile),
    )
    out = capsys.readouterr()
    assert code == 0
    path = config_dirs.local / "trustedkeys/prefix.d/example.com/app" / keys.good.lower()
    assert f'Added key for prefix "example.com/app" at "{path}"' in out.out
    # one spelling of a fingerprint in all output (issue #15): 40 upper-case hex digits
    assert f"gpg key fingerprint is: {keys.good.upper()}\n" in out.out
    assert "\tGood Signer <good@example.com>" in out.out
    assert 'pubkey: prefix: "example.com/app"' in out.err


def test_trusting_again_says_so_and_changes_nothing(
    config_dirs: ConfigDirs, keyfile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("trust", "--prefix", "example.com/app", "--skip-fingerprint-review", str(keyfile))
    assert rkt(config_dirs, *args) == 0
    before = snapshot(config_dirs.local)
    assert rkt(config_dirs, *args) == 0
    assert "already trusted" in capsys.readouterr().out
    assert snapshot(config_dirs.local) == before


def test_root_trust_must_be_explicit(
    config_dirs: ConfigDirs, keyfile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert rkt(config_dirs, "trust", str(keyfile)) == 254
    err = capsys.readouterr().err
    assert "trust: aborting due to implicit unbounded trust (root domain)" in err
    assert 'rkt trust --prefix "example.com/foo" [PUBKEY]' in err
    assert snapshot(config_dirs.local) == {}
    assert rkt(config_dirs, "trust", "--root", "--skip-fingerprint-review", str(keyfile)) == 0
    assert 'Added root key at "' in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--root", "--prefix", "example.com"], "--root and --prefix usage mutually exclusive"),
        (["--prefix", "https://example.com"], "--prefix must not contain a URL scheme"),
        (["--prefix", "Example.com/App"], "is not a valid AC Identifier"),
        (["--prefix", "example.com/../x"], "is not a valid AC Identifier"),
        (["--prefix", "example.com", "ftp://example.com/k"], "only local files and http or"),
        (["--prefix", "example.com", "http://example.com/k"], "--insecure-allow-http required"),
        (["--prefix", "example.com", "/nonexistent/key.asc"], "does not exist"),
        (["--root"], "error determining key location: empty prefix"),
    ],
)
def test_bad_invocations_exit_254_and_change_nothing(
    config_dirs: ConfigDirs, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert rkt(config_dirs, "trust", "--skip-fingerprint-review", *args) == 254
    assert message in capsys.readouterr().err
    assert snapshot(config_dirs.local) == {}


def test_malformed_key_file_is_refused(
    config_dirs: ConfigDirs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.asc"
    bad.write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnonsense\n")
    assert (
        rkt(config_dirs, "trust", "--prefix", "example.com", "--skip-fingerprint-review", str(bad))
        == 254
    )
    assert "is not an OpenPGP public key" in capsys.readouterr().err
    assert snapshot(config_dirs.local) == {}


@pytest.mark.parametrize("which", ["revoked", "expired", "weak"])
def test_unusable_keys_are_refused_and_nothing_is_written(
    config_dirs: ConfigDirs,
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    which: str,
) -> None:
    good, bad = tmp_path / "good.asc", tmp_path / "bad.asc"
    good.write_bytes(keys.public(keys.good))
    bad.write_bytes(keys.public(getattr(keys, which)))
    code = rkt(
        config_dirs,
        "trust",
        "--prefix",
        "example.com",
        "--skip-fingerprint-review",
        str(good),
        str(bad),
    )
    assert code == 254
    assert "not trusting key" in capsys.readouterr().err
    assert snapshot(config_dirs.local) == {}


def test_without_a_tty_review_is_refused_with_guidance(
    config_dirs: ConfigDirs, keyfile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert rkt(config_dirs, "trust", "--prefix", "example.com", str(keyfile)) == 254
    err = capsys.readouterr().err
    assert 'pubkey: To trust the key for "example.com", do one of the following:' in err
    assert "pubkey:  - call rkt with --trust-keys-from-https" in err
    assert "unable to ask user to review fingerprint due to lack of tty" in err
    assert snapshot(config_dirs.local) == {}


def test_list_and_remove(
    config_dirs: ConfigDirs, keys: Keys, keyfile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    system = config_dirs.system / "trustedkeys/prefix.d/example.com"
    system.mkdir(parents=True)
    (system / keys.rsa.lower()).write_bytes(keys.public(keys.rsa))
    rkt(
        config_dirs,
        "trust",
        "--prefix",
        "example.com/app",
        "--skip-fingerprint-review",
        str(keyfile),
    )
    capsys.readouterr()

    assert rkt(config_dirs, "trust", "list", "--format=json") == 0
    records = {r["fingerprint"]: r for r in json.loads(capsys.readouterr().out)}
    assert records[keys.good.upper()]["prefix"] == "example.com/app"
    assert records[keys.good.upper()]["level"] == "local"
    assert records[keys.rsa.upper()]["state"] == "trusted"
    assert records[keys.rsa.upper()]["user_ids"] == ["RSA Signer <rsa@example.com>"]

    assert rkt(config_dirs, "trust", "remove", "--prefix", "example.com", keys.rsa) == 0
    assert "Masked system key" in capsys.readouterr().out
    assert (system / keys.rsa.lower()).exists()
    rkt(config_dirs, "trust", "list", "--format=json")
    records = {r["fingerprint"]: r for r in json.loads(capsys.readouterr().out)}
    assert records[keys.rsa.upper()]["state"] == "masked"

    assert rkt(config_dirs, "trust", "remove", "--prefix", "example.com/app", keys.good) == 0
    assert "Removed key for prefix" in capsys.readouterr().out
    assert rkt(config_dirs, "trust", "list", "--no-legend") == 0
    assert keys.good.lower() not in capsys.readouterr().out


def test_missing_command_exits_254(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 254
    assert "missing command" in capsys.readouterr().err


def test_bad_insecure_option_exits_254(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--insecure-options=bogus", "version"]) == 254
    assert "unknown option 'bogus'" in capsys.readouterr().err

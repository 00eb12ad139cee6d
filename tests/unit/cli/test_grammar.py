"""rkt's flag grammar (pflag), command groups, help and the new verbs (issue #13)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustd.cli._apps import APP_FLAGS, parse_gids, parse_mount
from trustd.cli._grammar import FALSE_WORDS, TRUE_WORDS, reparse, split_interspersed
from trustd.cli.config import merged
from trustd.cli.main import SUBVERBS, build_parser, main
from trustd.cli.run import pod_env
from trustd.shared.errors import UserError
from trustd.shared.request import (
    AppRequest,
    Dirs,
    Envelope,
    Run,
    RunRequest,
    decode,
    encode,
)

KEY = "sha512-" + "ab" * 64


def parse(*words: str) -> argparse.Namespace:
    args = build_parser().parse_args(list(words))
    reparse(args)
    return args


@pytest.mark.parametrize(
    ("words", "attr", "value"),
    [
        (["gc", "--mark-only=true"], "mark_only", True),
        (["gc", "--mark-only=false"], "mark_only", False),
        (["gc", "--mark-only"], "mark_only", True),
        (["gc"], "mark_only", False),
        (["run", "--mds-register=false", "IMG"], "mds_register", False),
        (["run", "--mds-register=1", "IMG"], "mds_register", True),
        (["run", "--inherit-env=T", "IMG"], "inherit_env", True),
        (["run", "--no-overlay=true", "IMG"], "no_overlay", True),
        (["image-cat-manifest", "--pretty-print=false", "IMG"], "pretty_print", False),
        (["image-cat-manifest", "IMG"], "pretty_print", True),
        (["cat-manifest", "--pretty-print=false", "UUID"], "pretty_print", False),
        (["config", "--pretty-print=False"], "pretty_print", False),
        (["list", "--full=true", "--no-legend=0"], "full", True),
        (["--debug=true", "list"], "debug", True),
        (["list", "--debug=false"], "debug", False),
        (["fetch", "IMG", "--full"], "full", True),
        (["fetch", "IMG", "--full=false"], "full", False),
    ],
)
def test_booleans_take_go_words(words: list[str], attr: str, value: bool) -> None:
    assert getattr(parse(*words), attr) is value


@given(st.sampled_from(sorted(TRUE_WORDS | FALSE_WORDS)))
def test_every_parsebool_word_is_read(word: str) -> None:
    assert parse("gc", f"--mark-only={word}").mark_only is (word in TRUE_WORDS)


@given(st.text(min_size=1, max_size=12).filter(lambda w: w not in TRUE_WORDS | FALSE_WORDS))
def test_any_other_boolean_value_is_pflags_error(word: str) -> None:
    with pytest.raises(UserError, match=r"strconv\.ParseBool"):
        parse("gc", f"--mark-only={word}")


def test_flags_are_never_abbreviated() -> None:
    with pytest.raises(UserError):
        parse("gc", "--mark")
    with pytest.raises(UserError):
        parse("fetch", "--pull=never", "IMG")


def test_fetch_reads_its_flags_after_the_images() -> None:
    args = parse(
        "fetch", "A", "--insecure-options=image", "B", "--signature", "b.asc", "--pull-policy=new"
    )
    assert args.images == ["A", "B", "--signature", "b.asc"]
    assert args.pull_policy == "new" and str(args.insecure_options) != "Insecure.NONE"


def test_run_reads_pod_flags_among_images_and_keeps_app_flags_in_place() -> None:
    args = parse(
        "run",
        "--mount=volume=v,target=/all",
        "A",
        "--exec=/bin/sh",
        "--set-env=K=V",
        "B",
        "--ipc",
        "private",
        "--mount=volume=v,target=/b",
        "--",
        "--set-env=not-a-flag",
        "---",
        "--debug",
    )
    assert args.set_env == ["K=V"] and args.ipc == "private" and args.debug is True
    assert [m.target for m in args.pod_mounts] == ["/all"]
    assert args.images == [
        "A",
        "--exec=/bin/sh",
        "B",
        "--mount=volume=v,target=/b",
        "--",
        "--set-env=not-a-flag",
        "---",
    ]


words = st.lists(
    st.sampled_from(
        ["IMG", "--exec=/x", "--exec", "/y", "--full", "--", "---", "arg", "--bogus", "--net=host"]
    ),
    max_size=14,
)


@given(words)
def test_interspersed_split_loses_no_word_and_never_reads_app_args(tokens: list[str]) -> None:
    parser = build_parser().parse_args(["run", "IMG"])._interspersed[0]
    images, own = split_interspersed(parser, tokens, set(APP_FLAGS), app_args=True)
    assert sorted(images + own) == sorted(tokens)
    if "--" in tokens:
        start = tokens.index("--")
        end = tokens.index("---", start) if "---" in tokens[start:] else len(tokens)
        args = tokens[start:end]
        assert images[images.index("--") : images.index("--") + len(args)] == args


def _parsers(parser: argparse.ArgumentParser, path: str = "rkt") -> list[tuple[str, Any]]:
    out = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.extend(_parsers(sub, f"{path} {name}"))
    return out


def test_every_flag_of_every_command_has_help_text() -> None:
    missing = [
        f"{path} {action.option_strings or action.dest}"
        for path, parser in _parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction)
        and action.help is None
        and parser.add_help  # the bare placeholders of unimported verbs have no flags
    ]
    assert missing == []


def test_run_help_lists_the_per_app_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for flag in APP_FLAGS:
        assert flag in out
    assert "per-app flags" in out and "--set-env-file" in out and "--pod-manifest" in out


def test_groups_have_their_own_help_and_the_top_level_lists_groups(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert "image-list" not in top and "trust-list" not in top
    for group in SUBVERBS:
        assert f"    {group}" in top
    for group, subs in SUBVERBS.items():
        with pytest.raises(SystemExit) as done:
            main([group, "--help"])
        assert done.value.code == 0
        out = capsys.readouterr().out
        assert all(f"  {s} " in out for s in subs), group
    assert main(["image"]) == 0 and "subcommands" in capsys.readouterr().out
    assert main(["image", "bogus"]) == 254
    assert 'unknown command "bogus" for "rkt image"' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["image", "list", "--help"])
    assert capsys.readouterr().out.startswith("usage: rkt image list")


def test_version_flag_and_verb_agree(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    verb = capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == verb
    assert verb.startswith("rkt Version: ") and "appc Version: 0.8.11" in verb


def test_completion_scripts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    bash = capsys.readouterr().out
    assert "complete -F _rkt rkt" in bash and "--mark-only" in bash
    assert main(["completion", "zsh"]) == 0
    assert capsys.readouterr().out.startswith("#compdef rkt")
    assert main(["completion", "fish"]) == 254


def test_a_flag_before_its_command_is_read_as_cobra_reads_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([f"--local-config={tmp_path}", "--pretty-print=false", "config"]) == 0
    assert capsys.readouterr().out.strip() == '{"stage0":[]}'


def _write(base: Path, sub: str, name: str, doc: dict[str, object]) -> None:
    (base / sub).mkdir(parents=True, exist_ok=True)
    (base / sub / name).write_text(json.dumps({"rktVersion": "v1", **doc}))


def test_config_merges_as_rkt_does(tmp_path: Path) -> None:
    system, user = tmp_path / "system", tmp_path / "user"
    basic = {"user": "user", "password": "userPassword"}
    _write(
        system,
        "auth.d",
        "basic.json",
        {
            "rktKind": "auth",
            "type": "basic",
            "domains": ["tectonic.com", "coreos.com"],
            "credentials": basic,
        },
    )
    _write(
        user,
        "auth.d",
        "basic.json",
        {
            "rktKind": "auth",
            "type": "oauth",
            "domains": ["tectonic.com"],
            "credentials": {"token": "someToken"},
        },
    )
    _write(system, "paths.d", "p.json", {"rktKind": "paths", "data": "/a", "stage1-images": "/s"})
    _write(user, "paths.d", "p.json", {"rktKind": "paths", "data": "/home/me"})
    (user / "auth.d" / "notes.txt").write_text("ignored")
    got = merged([system, user])
    assert {
        "rktVersion": "v1",
        "rktKind": "auth",
        "domains": ["tectonic.com"],
        "type": "oauth",
        "credentials": {"token": "someToken"},
    } in got
    assert {
        "rktVersion": "v1",
        "rktKind": "auth",
        "domains": ["coreos.com"],
        "type": "basic",
        "credentials": basic,
    } in got
    assert {
        "rktVersion": "v1",
        "rktKind": "paths",
        "data": "/home/me",
        "stage1-images": "/s",
    } in got
    _write(user, "auth.d", "wrong.json", {"rktKind": "paths"})
    with pytest.raises(UserError, match="expects to have configuration files of kinds"):
        merged([system, user])


def test_env_file_then_set_env(tmp_path: Path) -> None:
    env = tmp_path / "env"
    env.write_text("# c\n; c\nA=file\nB=file=with=equals\n\n")
    assert pod_env([env], ["A=flag", "C="]) == (("A", "flag"), ("B", "file=with=equals"), ("C", ""))
    env.write_text("A=1\nA=2\n")
    with pytest.raises(UserError, match='environment variable "A" already set'):
        pod_env([env], [])
    with pytest.raises(UserError, match='key "X" already set'):
        pod_env([], ["X=1", "X=2"])
    with pytest.raises(UserError, match="key=value"):
        pod_env([], ["novalue"])


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("1024,2048", True),
        ("0", True),
        ("4294967294", True),
        ("4294967295", False),
        ("-1", False),
        ("a", False),
        ("", False),
    ],
)
def test_supplementary_gids_range(text: str, ok: bool) -> None:
    if ok:
        assert parse_gids(text)
    else:
        with pytest.raises(UserError):
            parse_gids(text)


@pytest.mark.parametrize(
    "text",
    [
        "volume=v",
        "target=/x",
        "volume=v,target=rel",
        "volume=V,target=/x",
        "volume=v,target=/x,extra=1",
        "volume=v,volume=w,target=/x",
    ],
)
def test_a_bad_mount_is_refused(text: str) -> None:
    with pytest.raises(UserError):
        parse_mount(text)


def _envelope(pod: RunRequest) -> bytes:
    return encode(Envelope(1, "run", Dirs("/a", "/b", "/c"), Run("run", pod)))


@pytest.mark.parametrize(
    ("path", "value", "why"),
    [
        (("ipc",), "host", "is not one of"),
        (("env",), [["A=B", "x"]], "has = or NUL"),
        (("inherited_env",), [["", "x"]], "is empty"),
        (("mounts",), [{"volume": "v", "target": "rel"}], "absolute"),
        (("apps", 0, "supplementary_gids"), [4294967295], "supplementary gids"),
        (("apps", 0, "oom_score_adj"), 1001, "oom score"),
        (("apps", 0, "cpu_shares"), 1, "cpu shares"),
        (("apps", 0, "user_labels"), [["k", "v\u0000"]], "NUL"),
        (("apps", 0, "extra"), 1, "extra"),
    ],
)
def test_root_re_checks_every_new_field(path: tuple[object, ...], value: object, why: str) -> None:
    doc = json.loads(_envelope(RunRequest(apps=(AppRequest(KEY),))))
    target = doc["request"]["pod"]
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with pytest.raises(UserError, match=why):
        decode(json.dumps(doc).encode())


def test_the_request_stays_size_capped() -> None:
    big = RunRequest(
        apps=(AppRequest(KEY),), inherited_env=tuple((f"V{i}", "x" * 100_000) for i in range(12))
    )
    with pytest.raises(UserError, match="over"):
        _envelope(big)


@pytest.mark.parametrize(
    "command",
    [["--help"], ["run", "--help"], ["completion", "bash"], ["image", "--help"]],
)
def test_a_reader_that_closes_early_gets_no_traceback(command: list[str]) -> None:
    rkt = Path(sys.executable).parent / "rkt"
    done = subprocess.run(  # noqa: S602 - a fixed pipeline
        f"{rkt} {' '.join(command)} | head -1",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.stdout.strip()
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


@pytest.mark.parametrize(
    "words",
    [
        ["fetch", "--signature", "x.asc", "IMG"],
        ["fetch", "--signature=x.asc", "IMG"],
        ["fetch", "--full", "--signature", "x.asc", "IMG"],
    ],
)
def test_fetch_signature_before_any_image_is_rkts_error(words: list[str]) -> None:
    with pytest.raises(UserError, match=r"^--signature must follow an image$"):
        parse(*words)


def test_fetch_signature_after_its_image_is_that_images_and_only_once() -> None:
    from trustd.cli.fetch import parse_image_args  # noqa: PLC0415

    args = parse("fetch", "A", "--signature", "a.asc", "B", "--full")
    assert args.full and parse_image_args(args.images) == [("A", Path("a.asc")), ("B", None)]
    twice = parse("fetch", "A", "--signature=a.asc", "--signature=b.asc").images
    with pytest.raises(UserError, match="--signature specified multiple times for the same image"):
        parse_image_args(twice)


@pytest.mark.parametrize(
    ("words", "wait", "ready"),
    [
        (["status", "--wait", "abcd"], "true", "false"),  # pflag NoOptDefVal: UUID stays
        (["status", "--wait-ready", "--wait", "abcd"], "true", "true"),
        (["status", "--wait=10s", "--wait-ready=false", "abcd"], "10s", "false"),
        (["status", "abcd"], "false", "false"),
    ],
)
def test_status_wait_flags_take_a_value_only_after_equals(
    words: list[str], wait: str, ready: str
) -> None:
    args = parse(*words)
    assert (args.wait, args.wait_ready, args.uuid) == (wait, ready, "abcd")

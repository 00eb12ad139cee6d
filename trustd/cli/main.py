"""``rkt`` entry point: parse, dispatch to the verb's module, map errors to exit 254.

The error contract: every failure ends in exit 254 and a message, never a traceback unless
``--debug`` is given. A :class:`TrustdError` prints ``<command>: <message>`` and its hint; an
over-long name or path (ENAMETOOLONG) and absurd nesting become user errors; any other
OSError names the file; stdout closed by the reader (``rkt image list | head -1``) ends
quietly; anything else is ``rkt: internal error: ...`` (a bug: ``--debug`` shows where).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from trustd.cli._common import (
    EXIT_ERROR,
    Parser,
    add_global_flags,
    cached_gettext,
    global_options,
    process_ends_with_main,
)
from trustd.cli._grammar import reparse
from trustd.shared._stdio import standard_fds_open
from trustd.shared.errors import UserError, report_failure

# verb -> module under trustd.cli; each module has register(subparsers, parents) and the
# handler it sets as the parser default ``func``. Imported lazily to keep start-up fast.
VERBS: dict[str, str] = {
    "fetch": "fetch",
    "run": "run",
    "prepare": "pods",
    "run-prepared": "pods",
    "list": "pods",
    "status": "pods",
    "stop": "pods",
    "rm": "pods",
    "gc": "pods",
    "cat-manifest": "pods",
    "export": "pods",
    "enter": "enter",
    "metadata-service": "mds",
    "attest-status": "attest",
    "attest-ak": "attest",
    "attest-quote": "attest",
    "attest-verify": "attest",
    "attest-replay": "attest",
    "attest-stop-tpm": "attest",
    "attest-identity": "attest_enrol",
    "attest-challenge": "attest_enrol",
    "attest-activate": "attest_enrol",
    "attest-enroll": "attest_enrol",
    "attest-serve": "attest",
    "attest-verify-fleet": "attest",
    "attest-policy-schema": "attest",
    "image-list": "image",
    "image-rm": "image",
    "image-cat-manifest": "image",
    "image-export": "image",
    "image-gc": "image",
    "image-render": "image",
    "image-extract": "image",
    "policy-check": "policy",
    "policy-explain": "policy",
    "policy-audit": "policy",
    "policy-schema": "policy",
    "policy-log": "policy",
    "trust": "trust",
    "trust-list": "trust_manage",
    "trust-remove": "trust_manage",
    "trust-verify": "trust_verify",
    "version": "version",
    "config": "config",
    "completion": "completion",
}
SUBVERBS = {
    "trust": ("list", "remove", "verify"),
    "image": ("list", "rm", "cat-manifest", "export", "gc", "render", "extract"),
    "attest": (
        "status",
        "ak",
        "quote",
        "verify",
        "verify-fleet",
        "replay",
        "stop-tpm",
        "serve",
        "policy-schema",
        "identity",
        "challenge",
        "activate",
        "enroll",
    ),
    "policy": ("check", "explain", "audit", "schema", "log"),
}

Handler = Callable[[argparse.Namespace], int]


GROUP_HELP = {
    "image": "operate on images in the local store",
    "trust": "trust a key for image verification; manage and check trusted keys",
    "attest": "TPM measurement and remote attestation of pods",
    "policy": "check, explain and audit the run policy",
}


def build_parser(verb: str | None = None) -> Parser:
    """The full parser, or (given the verb being run) only that verb's module imported: the
    other verbs get bare placeholders, which keeps every run from importing all of trustd."""
    parser = Parser(
        prog="rkt",
        description="trustd: a security-minded, rkt-compatible container engine",
        epilog="Run 'rkt COMMAND --help' for a command's flags; 'rkt image', 'rkt trust', "
        "'rkt attest' and 'rkt policy' are command groups.",
    )
    add_global_flags(parser, suppress=False)
    parser.add_argument(
        "--version", action=_Version, help="print the version and exit (as rkt version)"
    )
    verb_globals = Parser(add_help=False)
    add_global_flags(verb_globals, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    if verb in VERBS:
        modules = [VERBS[verb], *(VERBS[f"{verb}-{s}"] for s in SUBVERBS.get(verb, ()))]
    else:
        modules = list(VERBS.values())
    for module in dict.fromkeys(modules):
        importlib.import_module(f"trustd.cli.{module}").register(sub, [verb_globals])
    _groups(sub, [verb_globals])
    for name in VERBS:
        if name not in sub.choices:
            sub.add_parser(name, add_help=False)
    return parser


def _groups(sub: Any, parents: list[Parser]) -> None:
    """rkt's command groups: ``rkt image`` (and trust, attest, policy) with their own help;
    the routed verbs (``image-list``) leave the top-level listing, and each group's help
    lists its subcommands."""
    listed = sub._choices_actions
    members: dict[str, list[tuple[str, str]]] = {g: [] for g in SUBVERBS}
    for entry in list(listed):
        group, _, rest = entry.dest.partition("-")
        if group in SUBVERBS and rest in SUBVERBS[group]:
            members[group].append((rest, entry.help or ""))
            listed.remove(entry)
            sub.choices[entry.dest].prog = f"rkt {group} {rest}"
            sub.choices[entry.dest].short_help = entry.help  # for rkt(1) and the completions
    for group, subs in members.items():
        lines = "\n".join(f"  {name:<16}{text}" for name, text in subs)
        text = f"subcommands (run 'rkt {group} SUBCOMMAND --help'):\n{lines}"
        if group in sub.choices:  # rkt trust is a command of its own, with subcommands
            p = sub.choices[group]
            p.epilog = text
            p.formatter_class = argparse.RawDescriptionHelpFormatter
            continue
        p = sub.add_parser(
            group,
            parents=parents,
            help=GROUP_HELP[group],
            description=GROUP_HELP[group],
            epilog=text,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            usage=f"rkt {group} SUBCOMMAND [flags]",
        )
        p.add_argument("subcommand", nargs="?", help="one of the subcommands below")
        p.set_defaults(func=_group_help(p, group))


def _group_help(p: Parser, group: str) -> Handler:
    def run(args: argparse.Namespace) -> int:
        if args.subcommand is not None:
            raise UserError(
                f'unknown command "{args.subcommand}" for "rkt {group}"',
                hint=f"see: rkt {group} --help",
            )
        p.print_help()
        return 0

    return run


class _Version(argparse.Action):
    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        from trustd.cli.version import print_version  # noqa: PLC0415

        print_version()
        sys.stdout.flush()
        raise SystemExit(0)


def _stdout_gone() -> None:
    """The reader closed our stdout: nothing more can be said there, and Python's flush at
    exit must not fail again, so point fd 1 at /dev/null."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a real file (tests capture it)
        pass


def _route_subverbs(args: list[str]) -> list[str]:
    """``rkt trust list ...`` -> ``rkt trust-list ...`` (the first verb token only)."""
    for i, token in enumerate(args):
        if token in VERBS or token in SUBVERBS:
            if i + 1 < len(args) and args[i + 1] in SUBVERBS.get(token, ()):
                return [*args[:i], f"{token}-{args[i + 1]}", *args[i + 2 :]]
            break
    return args


def _hoist(args: list[str]) -> list[str]:
    """cobra finds the command first and parses every flag against it, so a command's own
    flag may come before its name (``rkt --pretty-print=false config``): such flags move to
    just after the command."""
    verb_at = next((i for i, a in enumerate(args) if a in VERBS or a in SUBVERBS), None)
    if verb_at is None:
        return args
    probe = Parser(add_help=False)
    add_global_flags(probe, suppress=True)
    known = {o for a in probe._actions for o in a.option_strings} | {"--version", "-h", "--help"}
    before: list[str] = []
    moved: list[str] = []
    for word in args[:verb_at]:
        name = word.partition("=")[0]
        (moved if word.startswith("--") and "=" in word and name not in known else before).append(
            word
        )
    return [*before, args[verb_at], *moved, *args[verb_at + 1 :]]


def parse_command(args_list: list[str], verb: str) -> argparse.Namespace:
    """The namespace of ``rkt ARGS`` (routed and hoisted): a plain ``rkt run`` by the lean
    parse (trustd/cli/_fastrun.py, issue #14), anything else by the full parser."""
    if verb == "run":
        from trustd.cli._fastrun import parse  # noqa: PLC0415

        if (lean := parse(args_list)) is not None:
            return lean
    return full_parse(args_list, verb)


def full_parse(args_list: list[str], verb: str) -> argparse.Namespace:
    """The namespace of ``rkt ARGS`` by the full parser (a usage error raises)."""
    parser = build_parser(verb if verb in VERBS else None)
    args = parser.parse_args(args_list)
    reparse(args)  # a verb's own flags given among its images (rkt fetch IMG --full)
    if args.command is None:
        parser.print_help(sys.stderr)
        raise UserError("missing command", hint="see: rkt --help")
    return args


def _dispatch(args_list: list[str], verb: str) -> int:
    args = parse_command(args_list, verb)
    args.options = global_options(args)
    handler: Handler = args.func
    code = handler(args)
    sys.stdout.flush()  # a reader that went away is seen here, not at exit
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args_list = _hoist(_route_subverbs(list(sys.argv[1:] if argv is None else argv)))
    verb = next((a for a in args_list if a in VERBS), "rkt")
    parent, _, sub = verb.partition("-")
    command = sub if parent in SUBVERBS and sub else verb
    debug = any(a == "--debug" or a.startswith("--debug=t") for a in args_list) and not any(
        a.startswith("--debug=f") for a in args_list
    )
    try:
        with cached_gettext():  # for as long as rkt's parsers are built and used
            return _dispatch(args_list, verb)
    except BrokenPipeError:
        # The reader went away (``| head``): the output is incomplete, so not 0 (rkt, a Go
        # program, dies of SIGPIPE there), but there is nobody to tell: no message.
        _stdout_gone()
        return EXIT_ERROR
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the error contract
        report_failure(command, exc, debug)
        return EXIT_ERROR


def entry() -> NoReturn:
    """The ``rkt`` console script: :func:`main`, then ``os._exit`` once stdout and stderr are
    flushed. Tearing the interpreter down (every module, every object) is pure cost for a
    process that is done (ADR 0020, decision 1, as the root program does); nothing of
    trustd's waits for exit (no ``atexit``, temporary dirs and threads are closed in place)."""
    standard_fds_open()  # before anything is opened: rkt run >&- must not print into a file
    process_ends_with_main()
    try:
        code = main()
    except SystemExit as exc:  # argparse's --help and usage errors, --version
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):  # the reader went away after the last check
        code = code or EXIT_ERROR
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()

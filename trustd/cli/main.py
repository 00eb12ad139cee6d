"""``rkt`` entry point: parse, dispatch to the verb's module, map errors to exit 254."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from trustd.cli._common import EXIT_ERROR, Parser, add_global_flags, global_options
from trustd.shared.errors import TrustdError, report

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
    "attest-status": "attest",
    "attest-ak": "attest",
    "attest-quote": "attest",
    "attest-verify": "attest",
    "attest-replay": "attest",
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
    "trust": "trust",
    "trust-list": "trust_manage",
    "trust-remove": "trust_manage",
    "trust-verify": "trust_verify",
    "version": "version",
}
SUBVERBS = {
    "trust": ("list", "remove", "verify"),
    "image": ("list", "rm", "cat-manifest", "export", "gc", "render", "extract"),
    "attest": ("status", "ak", "quote", "verify", "replay"),
    "policy": ("check", "explain", "audit", "schema"),
}

Handler = Callable[[argparse.Namespace], int]


def build_parser(verb: str | None = None) -> Parser:
    """The full parser, or (given the verb being run) only that verb's module imported: the
    other verbs get bare placeholders, which keeps every run from importing all of trustd."""
    parser = Parser(
        prog="rkt", description="trustd: a security-minded, rkt-compatible container engine"
    )
    add_global_flags(parser, suppress=False)
    verb_globals = Parser(add_help=False)
    add_global_flags(verb_globals, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    modules = [VERBS[verb]] if verb in VERBS else list(dict.fromkeys(VERBS.values()))
    for module in modules:
        importlib.import_module(f"trustd.cli.{module}").register(sub, [verb_globals])
    for name in VERBS:
        if name not in sub.choices:
            sub.add_parser(name, add_help=False)
    return parser


def _route_subverbs(args: list[str]) -> list[str]:
    """``rkt trust list ...`` -> ``rkt trust-list ...`` (the first verb token only)."""
    for i, token in enumerate(args):
        if token in VERBS or token in SUBVERBS:
            if i + 1 < len(args) and args[i + 1] in SUBVERBS.get(token, ()):
                return [*args[:i], f"{token}-{args[i + 1]}", *args[i + 2 :]]
            break
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args_list = _route_subverbs(list(sys.argv[1:] if argv is None else argv))
    verb = next((a for a in args_list if a in VERBS), "rkt")
    parent, _, sub = verb.partition("-")
    command = sub if parent in SUBVERBS and sub else verb
    debug = "--debug" in args_list
    try:
        parser = build_parser(verb if verb in VERBS else None)
        args = parser.parse_args(args_list)
        if args.command is None:
            print("missing command", file=sys.stderr)
            parser.print_help(sys.stderr)
            return 2
        args.options = global_options(args)
        handler: Handler = args.func
        return handler(args)
    except TrustdError as exc:
        report(command, exc, debug)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The ``rkt`` command line as data, read from the parser itself (trustd.cli.main.build_parser):
what the man page and completion generators print. No network, no state: only argparse."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from trustd.cli.main import SUBVERBS, build_parser


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    metavar: str | None  # None: a flag that takes no value
    choices: tuple[str, ...]
    help: str


@dataclass(frozen=True)
class Command:
    name: str  # as typed: "trust list"
    flat: str  # as the parser knows it: "trust-list"
    help: str
    description: str
    usage: str
    options: tuple[Option, ...]


def _options(parser: argparse.ArgumentParser) -> tuple[Option, ...]:
    out = []
    for action in parser._actions:  # argparse has no public walk
        if not action.option_strings or argparse.SUPPRESS in (action.help, action.default):
            continue  # a positional, or a global flag repeated on a verb (see rkt(1))
        if isinstance(action, argparse._HelpAction):
            continue
        takes = action.nargs != 0
        metavar = action.metavar or action.dest.upper() if takes else None
        choices = tuple(str(c) for c in action.choices) if action.choices else ()
        out.append(Option(tuple(action.option_strings), metavar, choices, action.help or ""))
    return tuple(out)


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:  # type: ignore[type-arg]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise SystemExit("rkt's parser has no commands")


def _usage(parser: argparse.ArgumentParser, name: str) -> str:
    """``rkt NAME [options] POSITIONALS`` (the global flags are in rkt(1))."""
    formatter = parser._get_formatter()
    words = [f"rkt {name}", "[options]"]
    for action in parser._actions:
        if not action.option_strings and not isinstance(action, argparse._SubParsersAction):
            if action.nargs == argparse.REMAINDER and action.metavar:
                words.append(str(action.metavar))
            else:
                words.append(formatter._format_args(action, action.dest.upper()))
    return " ".join(w for w in words if w)


def display_name(flat: str) -> str:
    parent, _, sub = flat.partition("-")
    return f"{parent} {sub}" if parent in SUBVERBS and sub in SUBVERBS[parent] else flat


def model() -> tuple[argparse.ArgumentParser, tuple[Option, ...], tuple[Command, ...]]:
    """(the top parser, its global options, every command in the parser's order)."""
    parser = build_parser()
    sub = _subparsers(parser)
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    commands = []
    for flat, p in sub.choices.items():
        name = display_name(flat)
        commands.append(
            Command(
                name,
                flat,
                helps.get(flat) or getattr(p, "short_help", "") or "",
                p.description or "",
                _usage(p, name),
                _options(p),
            )
        )
    return parser, _options(parser), tuple(commands)

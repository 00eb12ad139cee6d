"""What every verb shares: global flags, the error contract, output helpers."""

from __future__ import annotations

import argparse
import contextlib
import enum
import functools
import json
import sys
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, NoReturn

from trustd.cli._grammar import BoolFlag, false_spelling, rewrite_bools
from trustd.shared.config import Dirs, GlobalOptions, directory_flag
from trustd.shared.errors import UserError, printable
from trustd.shared.insecure import Insecure, parse_insecure_options

EXIT_ERROR = 254  # rkt's exit code for every failure of its own

# Whether this process is the ``rkt`` program, which ends right after ``main()`` (set by
# trustd.cli.main.entry), or a caller of ``main()`` that goes on (tests, an embedding): only
# the former may drop its own privileges for good (trustd.cli._store.as_group_to_the_end).
_PROCESS = {"ends_with_main": False}


def process_ends_with_main() -> None:
    _PROCESS["ends_with_main"] = True


def ends_with_main() -> bool:
    return _PROCESS["ends_with_main"]


# argparse looks each label it may print ("options", "show this help message and exit") up
# in gettext's catalogues whenever it builds a parser, each lookup stat()ing 8 paths: about
# 900 failed stat calls and half of the parser's build for one ``rkt image list`` (issue
# #14). The catalogues do not change while rkt's parser is built and used, so each message's
# first answer is kept for that while (:func:`cached_gettext`), not for the whole process: a
# program that embeds ``main()`` and changes its locale afterwards gets argparse as it was.
_CACHED_GETTEXT = (
    functools.cache(argparse._),  # type: ignore[attr-defined]
    functools.cache(argparse.ngettext),  # type: ignore[attr-defined]
)


@contextlib.contextmanager
def cached_gettext() -> Iterator[None]:
    """argparse's message lookups answered from a cache inside; put back as they were after."""
    saved = (argparse._, argparse.ngettext)  # type: ignore[attr-defined]
    argparse._, argparse.ngettext = _CACHED_GETTEXT  # type: ignore[attr-defined]
    try:
        yield
    finally:
        argparse._, argparse.ngettext = saved  # type: ignore[attr-defined]


class Parser(argparse.ArgumentParser):
    """argparse with pflag's grammar (trustd/cli/_grammar.py): booleans take ``=true|false``,
    no abbreviations; a usage error is a UserError (exit 254 with a hint), as in rkt."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        return add_flag(super().add_argument, self, *args, **kwargs)

    def add_argument_group(self, *args: Any, **kwargs: Any) -> Any:
        return _pflag_container(super().add_argument_group(*args, **kwargs))

    def add_mutually_exclusive_group(self, *args: Any, **kwargs: Any) -> Any:
        return _pflag_container(super().add_mutually_exclusive_group(*args, **kwargs))

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        words = sys.argv[1:] if args is None else args
        return super().parse_known_args(rewrite_bools(self, words), namespace)

    def error(self, message: str) -> NoReturn:
        raise UserError(message, hint=f"see: {self.prog} --help")


def _pflag_container(group: Any) -> Any:
    raw = group.add_argument
    group.add_argument = lambda *args, **kwargs: add_flag(raw, group, *args, **kwargs)
    return group


def add_flag(
    add: Any, container: Any, *args: Any, deprecated: str | None = None, **kwargs: Any
) -> argparse.Action:
    """``add_argument`` where ``store_true`` is pflag's boolean (:class:`BoolFlag` plus its
    hidden ``--flag=false`` spelling) and ``deprecated=`` hides a flag and warns on use."""
    if deprecated is not None:
        kwargs["help"] = argparse.SUPPRESS
    if kwargs.get("action") != "store_true":
        action: argparse.Action = add(*args, **kwargs)
        action.deprecated = deprecated  # type: ignore[attr-defined]
        return action
    kwargs["action"] = BoolFlag
    action = add(*args, **kwargs)
    action.deprecated = deprecated  # type: ignore[attr-defined]
    hidden = {k: v for k, v in kwargs.items() if k in ("dest", "default")}
    add(
        *(false_spelling(o) for o in action.option_strings),
        **{**hidden, "dest": action.dest, "action": BoolFlag, "help": argparse.SUPPRESS},
    )
    return action


def add_global_flags(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """rkt's persistent flags; on verb parsers they default to SUPPRESS so either place works."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    g = parser.add_argument_group("global flags")
    g.add_argument(
        "--debug",
        action="store_true",
        default=default(False),
        help="print debug information and error tracebacks",
    )
    g.add_argument(
        "--dir",
        type=directory_flag,
        default=default(None),
        help="rkt data directory (default /var/lib/rkt)",
    )
    g.add_argument(
        "--system-config",
        type=directory_flag,
        default=default(None),
        help="system configuration directory (default /usr/lib/rkt)",
    )
    g.add_argument(
        "--local-config",
        type=directory_flag,
        default=default(None),
        help="local configuration directory (default /etc/rkt)",
    )
    g.add_argument(
        "--user-config",
        type=directory_flag,
        default=default(None),
        help="user configuration directory",
    )
    g.add_argument(
        "--insecure-options",
        type=parse_insecure_options,
        default=default(Insecure.NONE),
        metavar="OPTS",
        help="comma-separated list of security features to disable: "
        "image,tls,http,pubkey,capabilities,paths,seccomp,all-fetch,all-run,all",
    )
    g.add_argument(
        "--trust-keys-from-https",
        action="store_true",
        default=default(False),
        help="automatically trust gpg keys fetched from https",
    )


def global_options(args: argparse.Namespace) -> GlobalOptions:
    base = Dirs()
    dirs = Dirs(
        system_config=args.system_config or base.system_config,
        local_config=args.local_config or base.local_config,
        data=args.dir or base.data,
        user_config=args.user_config,
    )
    return GlobalOptions(
        dirs=dirs,
        debug=args.debug,
        insecure=args.insecure_options,
        trust_keys_from_https=args.trust_keys_from_https,
    )


MAX_INPUT = 64 << 20  # a quote bundle, key or event log handed to a verb


def read_input(path: Path, what: str, limit: int = MAX_INPUT) -> bytes:
    """A file named on the command line; a missing, unreadable or oversized one is a
    UserError naming it (never an OSError traceback)."""
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError as exc:
        raise UserError(f"{what} {path}: no such file", hint=f"check the path of {what}") from exc
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror}") from exc
    if len(data) > limit:
        raise UserError(f"{what} {path} is larger than {limit} bytes")
    return data


def info(command: str, message: str) -> None:
    """A diagnostic line on stderr, prefixed like rkt's loggers."""
    print(f"{command}: {message}", file=sys.stderr)


def table_text(rows: list[list[str]], legend: list[str] | None) -> str:
    """Tab-separated columns padded to the widest cell, with an optional legend row."""
    table = [[printable(c) for c in row] for row in ([legend] if legend else []) + rows]
    if not table:
        return ""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join(
        "\t".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table
    )


def print_table(rows: list[list[str]], legend: list[str] | None) -> None:
    """:func:`table_text`, printed."""
    if text := table_text(rows, legend):
        print(text)


# One --format vocabulary for every verb (issue #15): ``table`` for people (the default, aligned
# columns), rkt's ``json`` (one line) and ``json-pretty`` (indented), and where a verb has them
# the report formats ``sarif`` and ``junit``. ``text`` (trustd's earlier name) and ``""`` (rkt
# list's default) are read as ``table``.
FORMATS = ("table", "json", "json-pretty")
_ALIASES = {"": "table", "text": "table"}


def add_format_flag(parser: argparse.ArgumentParser, *extra: str) -> None:
    """``--format`` with the shared vocabulary (plus ``extra`` report formats)."""
    choices = (*FORMATS, *extra)

    def parse(text: str) -> str:
        value = _ALIASES.get(text, text)
        if value not in choices:
            raise UserError(
                f"--format {text!r} is not a format", hint=f"use one of: {', '.join(choices)}"
            )
        return value

    parser.add_argument(
        "--format",
        type=parse,
        choices=choices,  # after parse: aliases are mapped first; completion reads them
        default="table",
        metavar="FORMAT",
        help=f"output format: {', '.join(choices)} (default table)",
    )


def is_json(fmt: str) -> bool:
    return fmt in ("json", "json-pretty")


def _typed(value: object) -> object:
    """JSON for what json does not know: times as RFC 3339 strings, paths as strings, enums
    and flags by value, sets and tuples as lists."""
    if isinstance(value, datetime):
        return value.isoformat()  # trustd's times are aware (UTC): RFC 3339 with +00:00
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def json_text(doc: Any, fmt: str) -> str:
    """``doc`` as ``json`` (one line) or ``json-pretty`` (tab-indented), as rkt's
    ``json.Marshal`` and ``json.MarshalIndent(v, "", "\t")`` print them."""
    if fmt == "json-pretty":
        return json.dumps(doc, indent="\t", default=_typed)
    return json.dumps(doc, separators=(",", ":"), default=_typed)


def print_json(doc: Any, fmt: str) -> None:
    print(json_text(doc, fmt))


def word(value: bool | None) -> str:
    """A boolean for people: yes or no (never Python's True/False); None is unknown."""
    return "unknown" if value is None else ("yes" if value else "no")

"""rkt's flag grammar (spf13/pflag) on top of argparse.

* A boolean flag is ``--flag`` or ``--flag=VALUE`` with VALUE one of Go's ``strconv.ParseBool``
  words (``1 t T TRUE true True 0 f F FALSE false False``); ``--flag VALUE`` is not a value
  (VALUE is the next argument), as in pflag.
* No abbreviations: ``--pull`` is not ``--pull-policy`` (pflag matches whole names only).
* Interspersed flags: ``rkt fetch IMG --full`` and ``rkt run IMG --net=host IMG2`` read the
  command's own flags wherever they stand among the images (:func:`split_interspersed`);
  rkt's per-app flags keep their place, since they apply to the image before them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection, Sequence
from typing import Any

from trustd.shared.errors import UserError

TRUE_WORDS = frozenset({"1", "t", "T", "TRUE", "true", "True"})
FALSE_WORDS = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_FALSE_SUFFIX = "=false"


def parse_bool(flag: str, text: str) -> bool:
    """Go's ``strconv.ParseBool``, with pflag's error for anything else."""
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise UserError(
        f'invalid argument "{text}" for "{flag}" flag: strconv.ParseBool: parsing '
        f'"{text}": invalid syntax',
        hint=f"use {flag}, {flag}=true or {flag}=false",
    )


class BoolFlag(argparse.Action):
    """``--flag`` sets True; the parser rewrites ``--flag=false`` to the hidden companion
    option string ``--flag=false`` (see :func:`rewrite_bools`), which sets False."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("default", False)
        kwargs.pop("nargs", None)
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        value = not (option_string or "").endswith(_FALSE_SUFFIX)
        setattr(namespace, self.dest, value)
        if deprecated := getattr(self, "deprecated", None):  # pflag's MarkDeprecated
            name = (option_string or "").removesuffix(_FALSE_SUFFIX)
            print(f"Flag {name} has been deprecated, {deprecated}", file=sys.stderr)


def no_opt_value(action: argparse.Action, value: str) -> argparse.Action:
    """pflag's ``NoOptDefVal``: ``--flag`` alone means ``--flag=VALUE``; ``--flag WORD``
    leaves WORD to the positionals (:func:`rewrite_bools` spells the bare flag out)."""
    action.no_opt_value = value  # type: ignore[attr-defined]
    return action


def false_spelling(option: str) -> str:
    return option + _FALSE_SUFFIX


def rewrite_bools(parser: argparse.ArgumentParser, args: Sequence[str]) -> list[str]:
    """``--flag=WORD`` for a boolean flag of ``parser`` -> ``--flag`` or ``--flag=false``;
    nothing after ``--`` is touched (it belongs to an app)."""
    actions = parser._option_string_actions
    out: list[str] = []
    for i, word in enumerate(args):
        if word == "--":
            out.extend(args[i:])
            break
        name, eq, value = word.partition("=")
        bare = actions.get(word) if word.startswith("--") else None
        if not eq and (no_opt := getattr(bare, "no_opt_value", None)) is not None:
            out.append(f"{word}={no_opt}")  # pflag's NoOptDefVal: a value only after "="
            continue
        action = actions.get(name) if eq and word.startswith("--") else None
        if isinstance(action, BoolFlag):
            out.append(name if parse_bool(name, value) else false_spelling(name))
        else:
            out.append(word)
    return out


def takes_value(parser: argparse.ArgumentParser, option: str) -> bool | None:
    """Whether ``option`` of ``parser`` reads a value (None: not an option of it)."""
    action = parser._option_string_actions.get(option)
    if action is None:
        return None
    return action.nargs != 0


def split_interspersed(
    parser: argparse.ArgumentParser,
    words: Sequence[str],
    app_flags: Collection[str],
    *,
    app_args: bool,
) -> tuple[list[str], list[str]]:
    """rkt's ``parseApps``: split the words after the first image into (images with their
    per-app flags and ``-- args ---``, the command's own flags found among them). Unknown
    flags stay with the images (the per-app parser names them)."""
    images: list[str] = []
    own: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--" and app_args:
            end = words.index("---", i) + 1 if "---" in words[i:] else len(words)
            images.extend(words[i:end])
            i = end
            continue
        name, eq, _ = word.partition("=")
        if word.startswith("--") and name not in app_flags:
            value = takes_value(parser, name)
            no_opt = getattr(parser._option_string_actions.get(name), "no_opt_value", None)
            if value is not None and not eq and no_opt is not None:
                own.append(f"{word}={no_opt}")  # NoOptDefVal: the next word stays an image
                i += 1
                continue
            if value is not None:
                own.append(word)
                if value and not eq and i + 1 < len(words):
                    own.append(words[i + 1])
                    i += 1
                i += 1
                continue
        images.append(word)
        i += 1
    return images, own


def interspersed(
    parser: argparse.ArgumentParser, app_flags: Collection[str], *, app_args: bool
) -> dict[str, Any]:
    """``set_defaults(**interspersed(...))`` on a verb whose ``images`` is a REMAINDER: the
    dispatcher then reads the verb's own flags found among the images (:func:`reparse`)."""
    return {"_interspersed": (parser, frozenset(app_flags), app_args)}


def reparse(args: argparse.Namespace) -> None:
    """The second pass of :func:`interspersed`: the verb's flags among ``args.images`` are
    parsed into ``args`` (a later value wins, as in pflag); ``args.images`` keeps the rest."""
    spec = getattr(args, "_interspersed", None)
    if spec is None:
        return
    parser, app_flags, app_args = spec
    images, own = split_interspersed(parser, args.images, app_flags, app_args=app_args)
    if own:
        parser.parse_args(own, namespace=args)
    args.images = images
    del args._interspersed

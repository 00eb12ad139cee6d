"""``rkt completion bash|zsh``: a shell completion script for the commands and flags of this
``rkt`` (read from its own parser, so it never goes stale). zsh gets the bash script behind
``bashcompinit``, as rkt's generator did."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from trustd.shared.errors import UserError

SHELLS = ("bash", "zsh")


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "completion",
        parents=parents,
        help="output shell completion code for the specified shell",
        description="Load it with: source <(rkt completion bash)",
    )
    p.add_argument("shell", nargs="?", metavar="SHELL", help="bash or zsh")
    p.set_defaults(func=run)


def _words() -> dict[str, list[str]]:
    """command -> its flags; "" -> the commands and global flags."""
    from trustd.cli._common import cached_gettext  # noqa: PLC0415
    from trustd.cli.main import SUBVERBS, build_parser  # noqa: PLC0415

    with cached_gettext():
        parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    listed = [a.dest for a in sub._choices_actions]
    words = {"": [*listed, *_flags(parser)]}
    for name, p in sub.choices.items():
        group, _, rest = name.partition("-")
        key = f"{group} {rest}" if group in SUBVERBS and rest in SUBVERBS[group] else name
        words[key] = _flags(p)
    for group, subs in SUBVERBS.items():
        words[group] = [*subs, *words.get(group, [])]
    return words


def _flags(p: argparse.ArgumentParser) -> list[str]:
    return sorted(
        o
        for a in p._actions
        if a.help != argparse.SUPPRESS
        for o in a.option_strings
        if o.startswith("--")
    )


def bash_script() -> str:
    from trustd.cli.main import SUBVERBS  # noqa: PLC0415

    groups = " ".join(SUBVERBS)
    cases = "\n".join(
        f"        {shlex.quote(key or '_')}) words={shlex.quote(' '.join(vals))} ;;"
        for key, vals in sorted(_words().items())
    )
    return f"""# bash completion for rkt (trustd)
_rkt() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" cmd="_" w words
    for w in "${{COMP_WORDS[@]:1:COMP_CWORD-1}}"; do
        case "$w" in
            -*) ;;
            *) if [[ "$cmd" == "_" ]]; then cmd="$w"
               elif [[ " {groups} " == *" $cmd "* ]]; then cmd="$cmd $w"; break
               else break; fi ;;
        esac
    done
    case "$cmd" in
{cases}
        *) words="" ;;
    esac
    COMPREPLY=( $(compgen -W "$words" -- "$cur") )
    if [[ ${{#COMPREPLY[@]}} -eq 0 ]]; then COMPREPLY=( $(compgen -f -- "$cur") ); fi
}}
complete -F _rkt rkt
"""


def run(args: argparse.Namespace) -> int:
    if args.shell not in SHELLS:
        raise UserError(
            "Shell not specified." if args.shell is None else f"Unsupported shell {args.shell!r}",
            hint="rkt completion bash | rkt completion zsh",
        )
    script = bash_script()
    if args.shell == "zsh":
        script = "#compdef rkt\nautoload -U +X bashcompinit && bashcompinit\n" + script
    print(script, end="")
    return 0

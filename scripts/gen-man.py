"""Write rkt's man pages (roff) from the parser: ``rkt.1`` and one ``rkt-<command>.1`` per
command, as git does (``rkt-trust-list.1`` for ``rkt trust list``).

    python scripts/gen-man.py OUTDIR

Run it with the interpreter trustd is installed in (make install does); no network. The
pages carry no date, so the same trustd gives the same bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from _cli_model import Command, Option, model

import trustd

FOOTER = f'"trustd {trustd.__version__}" "rkt manual"'


def esc(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + ln if ln.startswith((".", "'")) else ln for ln in text.splitlines())


def _option(opt: Option) -> list[str]:
    flags = ", ".join(f"\\fB{esc(f)}\\fR" for f in opt.flags)
    if opt.metavar:
        flags += f" \\fI{esc(opt.metavar)}\\fR"
    text = opt.help + (f" (one of: {', '.join(opt.choices)})" if opt.choices else "")
    return [".TP", flags, esc(text) or "\\&"]


def _page(title: str, name: str, summary: str) -> list[str]:
    return [
        f'.TH "{title.upper()}" 1 "" {FOOTER}',
        ".SH NAME",
        f"{esc(name)} \\- {esc(summary)}",
    ]


def command_page(cmd: Command) -> str:
    lines = _page(f"rkt-{cmd.flat}", f"rkt-{cmd.flat}", cmd.help or cmd.name)
    lines += [".SH SYNOPSIS", ".nf", esc(cmd.usage), ".fi"]
    if cmd.description:
        lines += [".SH DESCRIPTION", esc(cmd.description)]
    if cmd.options:
        lines.append(".SH OPTIONS")
        for opt in cmd.options:
            lines += _option(opt)
    lines += [".SH SEE ALSO", "\\fBrkt\\fR(1)"]
    return "\n".join(lines) + "\n"


def main_page(globals_: tuple[Option, ...], commands: tuple[Command, ...]) -> str:
    lines = _page("rkt", "rkt", "trustd, a security-minded, rkt-compatible container engine")
    lines += [".SH SYNOPSIS", "\\fBrkt\\fR [\\fIglobal flags\\fR] \\fICOMMAND\\fR [\\fIargs\\fR]"]
    lines += [
        ".SH DESCRIPTION",
        "Fetch images without root, verify who signed them for which name prefix, run them in "
        "isolated pods under one policy, and measure every pod start into a TPM.",
        ".SH COMMANDS",
    ]
    for cmd in commands:
        see = f"(\\fBrkt\\-{esc(cmd.flat)}\\fR(1))"
        lines += [".TP", f"\\fBrkt {esc(cmd.name)}\\fR", f"{esc(cmd.help)} {see}"]
    lines.append(".SH GLOBAL FLAGS")
    for opt in globals_:
        lines += _option(opt)
    lines += [
        ".SH EXIT STATUS",
        "A command's own failures exit 254 with \\fIcommand\\fB: \\fImessage\\fR and a hint; "
        "\\fBrkt run\\fR exits with the first app's status.",
        ".SH FILES",
        ".TP",
        "\\fI/usr/lib/rkt\\fR",
        "system configuration: \\fIpolicy.toml\\fR, \\fItrustedkeys/\\fR",
        ".TP",
        "\\fI/etc/rkt\\fR",
        "local configuration (root and group rkt\\-admin): policy, keys, \\fIauth.d/\\fR",
        ".TP",
        "\\fI/var/lib/rkt\\fR",
        "the image store (group rkt) and pods (root)",
        ".SH SEE ALSO",
        ", ".join(f"\\fBrkt\\-{esc(c.flat)}\\fR(1)" for c in commands),
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 0 if sys.argv[1:] in (["-h"], ["--help"]) else 2
    if sys.argv[1].startswith("-"):
        print(f"gen-man: {sys.argv[1]!r} is not an output directory; usage:", file=sys.stderr)
        print(__doc__.strip(), file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    _, globals_, commands = model()
    (out / "rkt.1").write_text(main_page(globals_, commands))
    for cmd in commands:
        (out / f"rkt-{cmd.flat}.1").write_text(command_page(cmd))
    print(f"{len(commands) + 1} man pages in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

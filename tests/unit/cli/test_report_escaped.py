"""Root's error report escapes what another user may have written into a message."""

from __future__ import annotations

import pytest

from trustd.shared.errors import LocalStateError, report


def test_each_line_of_a_message_and_hint_is_printed_escaped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    exc = LocalStateError("store index: \x1b[2Jx\nsecond \x07line", hint="fix \x1b]0;t\x07")
    report("run", exc, debug=False)
    assert capsys.readouterr().err == (
        "run: store index: \\x1b[2Jx\nsecond \\x07line\n  fix \\x1b]0;t\\x07\n"
    )

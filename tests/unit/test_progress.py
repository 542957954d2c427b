"""Progress of long commands on stderr (issue #18.8b): in place on a terminal, plain lines otherwise."""
from __future__ import annotations

import io

from minqing.progress import Progress


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_one_line_rewritten_in_place():
    out, now = _Tty(), [0.0]
    p = Progress("verify", out, clock=lambda: now[0])
    p.update(10, 100)
    now[0] += 1
    p.update(50, 100)
    p.done("100 events checked")
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n") and text.count("\r") == 3
    assert "verify: 50/100 events (50%)" in text


def test_a_pipe_gets_plain_lines_not_too_often():
    out, now = io.StringIO(), [0.0]
    p = Progress("rebuild", out, every_seconds=5, clock=lambda: now[0])
    for n in range(10):
        p.update(n, 10)
        now[0] += 1
    p.done()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines == ["rebuild: 0/10 events (0%)", "rebuild: 5/10 events (50%)", "rebuild: done"]

"""The one progress bar: drawn on a terminal only, with the columns its unit asks for."""

from __future__ import annotations

import io
import sys

import pytest

from galaxymorph.progress import progress_bar, shows, track


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_bars_are_inert(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not shows(True)
    assert list(track(range(5), total=5)) == [0, 1, 2, 3, 4]
    with progress_bar("x", 3) as bar:
        bar.advance(2)
        bar.reset(10, 4)
        bar.note("retrying")
    assert sys.stderr.getvalue() == ""


@pytest.mark.parametrize("unit, shown", [("images", "images/s"), ("bytes", "bytes")])
def test_on_a_terminal_the_bar_is_drawn(monkeypatch, unit, shown):
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert shows(True) and not shows(False)
    with progress_bar("predicting", 4, unit=unit, transient=False) as bar:
        bar.advance(4)
    out = term.getvalue()
    assert "predicting" in out and shown in out
    assert list(track(range(3), total=3, enabled=False)) == [0, 1, 2]

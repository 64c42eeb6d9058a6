"""Listen addresses are printed so that a person can copy one whole at 80 columns."""

from __future__ import annotations

import pytest

from p2pchat.cli._output import address_row, show_lines, show_panel

ADDR = "/ip4/198.51.100.10/tcp/4242/p2p/12D3KooWNbSGtXCWZfSudT4gyto5iurFj2c8sbABjVZ7wdQLkYFM"


def test_at_80_columns_an_address_leaves_the_box_and_stays_on_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    value, below = address_row([ADDR, ADDR.replace(".10/", ".11/")])
    show_panel("p2pchat node", [("Listening", value)])
    show_lines(below)
    out = capsys.readouterr().out
    assert "2 addresses, in full below" in out
    lines = out.splitlines()
    assert ADDR in lines  # a line of its own, not folded inside the box
    assert ADDR.replace(".10/", ".11/") in lines


def test_a_wide_terminal_keeps_addresses_in_the_panel(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    value, below = address_row([ADDR])
    assert (value, below) == (ADDR, [])
    assert address_row([]) == ("nowhere", [])

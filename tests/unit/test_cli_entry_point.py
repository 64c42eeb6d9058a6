"""The console-script entry point (``p2pchat.cli.main``): how it ends.

Ctrl-C must end the program with status 130 and no message at any moment, also while
click still parses the arguments (click's standalone mode says "Aborted!" and exits 1
there); every other click outcome keeps click's own message and status. The moments are
made exact here by raising where the interrupt would land, in the real ``main()``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn

import click
import pytest
import trio

from p2pchat import __version__
from p2pchat.cli import _root, main
from p2pchat.cli._errors import sole_error
from p2pchat.errors import NetworkError


def _run(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["p2pchat", *args])
    with pytest.raises(SystemExit) as ended:
        main()
    code = ended.value.code
    assert isinstance(code, int)
    return code


def _parse_args_raising(make: Callable[[], BaseException]) -> Callable[..., NoReturn]:
    def parse_args(ctx: click.Context, args: list[str]) -> NoReturn:
        raise make()

    return parse_args


def _interrupted_prompt() -> BaseException:
    # What click.confirm/prompt raise on Ctrl-C: Abort, with the interrupt as context only.
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        try:
            raise click.Abort() from None
        except click.Abort as abort:
            return abort


@pytest.mark.parametrize("make", [KeyboardInterrupt, _interrupted_prompt])
def test_ctrl_c_while_click_parses_the_arguments_exits_130_quietly(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    make: Callable[[], BaseException],
) -> None:
    monkeypatch.setattr(_root.cli, "parse_args", _parse_args_raising(make))
    assert _run(monkeypatch, "status") == 130
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "\n"  # the ^C line is ended, nothing else (no "Aborted!", no traceback)


def test_ctrl_c_inside_a_command_exits_130_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    @_root.cli.command("interrupted-for-test")
    def interrupted() -> None:
        raise KeyboardInterrupt

    try:
        assert _run(monkeypatch, "interrupted-for-test") == 130
    finally:
        _root.cli.commands.pop("interrupted-for-test")
    assert capsys.readouterr() == ("", "\n")


def test_ctrl_d_at_a_prompt_is_still_clicks_aborted_and_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_root.cli, "parse_args", _parse_args_raising(EOFError))
    assert _run(monkeypatch, "status") == 1
    assert capsys.readouterr().err.endswith("Aborted!\n")


def test_usage_errors_help_and_version_keep_clicks_messages_and_statuses(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(monkeypatch, "--no-such-option") == 2
    assert "Error: No such option '--no-such-option'" in capsys.readouterr().err
    assert _run(monkeypatch, "no-such-command") == 2
    assert "No such command 'no-such-command'" in capsys.readouterr().err
    assert _run(monkeypatch, "--version") == 0
    assert __version__ in capsys.readouterr().out
    assert _run(monkeypatch, "keys", "--help") == 0
    assert "Usage: p2pchat keys" in capsys.readouterr().out


def test_a_command_that_succeeds_exits_0_whatever_it_returns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    @_root.cli.command("returns-for-test")
    def returns() -> int:
        click.echo("ran")
        return 7  # a return value is not an exit status (click's standalone mode agrees)

    try:
        assert _run(monkeypatch, "returns-for-test") == 0
    finally:
        _root.cli.commands.pop("returns-for-test")
    assert capsys.readouterr().out == "ran\n"


def test_an_error_inside_nested_nurseries_reaches_the_root_command_bare() -> None:
    # `node run` and `devices join` run libp2p's nested nurseries under trio.run: a Ctrl-C
    # or a typed error inside them must come out bare (so it exits 130, or with the
    # error's own status), not as a group.
    async def nested(leaf: BaseException) -> None:
        async with trio.open_nursery() as outer:
            outer.start_soon(trio.sleep_forever)
            async with trio.open_nursery() as inner:
                inner.start_soon(trio.sleep_forever)
                raise leaf

    for leaf in (KeyboardInterrupt(), NetworkError("no route")):
        with pytest.raises(BaseExceptionGroup) as caught:
            trio.run(nested, leaf)
        assert sole_error(caught.value) is leaf
    two = BaseExceptionGroup("two", [ValueError("a"), BaseExceptionGroup("b", [TypeError()])])
    assert sole_error(two) is two

"""What every command shares: the global options, the clock and the randomness.

The CLI is the edge of the program, so this is where wall-clock time and OS randomness
enter; everything below receives them as ``now`` and ``rng``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from ..identity.home import Home, resolve_home

__all__ = ["CliState", "pass_state", "json_option", "wide_option", "now_ms", "system_rng"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliState:
    """The root group's options, filled in once and read by every command.

    Mutable on purpose: ``--json`` may also be given after the command name, and that
    per-command flag switches the same setting on.
    """

    home_option: Path | None = None
    passphrase_file: Path | None = None
    json: bool = False
    verbose: int = 0
    wide: bool = False

    @property
    def home(self) -> Home:
        return Home(resolve_home(self.home_option, os.environ))


pass_state = click.make_pass_decorator(CliState, ensure=True)


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(CliState).json = True


def json_option(command: F) -> F:
    """``--json`` on a command: the same switch as the global ``p2pchat --json``."""
    decorate = click.option(
        "--json",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set_json,
        help="Print one JSON object on stdout instead of text (keys listed above).",
    )
    return decorate(command)


def _set_wide(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(CliState).wide = True


def wide_option(command: F) -> F:
    """``--wide`` on a table: full keys and ids instead of their short form."""
    decorate = click.option(
        "--wide",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set_wide,
        help="Show keys and ids in full (tables shorten them to fit 80 columns).",
    )
    return decorate(command)


def now_ms() -> int:
    """Milliseconds since the Unix epoch: the ``now`` handed to the library."""
    return time.time_ns() // 1_000_000


def system_rng(n: int) -> bytes:
    """The operating system's CSPRNG as an ``Rng``."""
    return os.urandom(n)

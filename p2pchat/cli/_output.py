"""Everything the CLI prints: rich panels for people, one JSON object for programs.

Results go to stdout; warnings and errors to stderr, so ``--json`` output stays one
parseable object even when a warning is shown. Errors are mapped to exit codes here
and nowhere else (:data:`EXIT_CODES`, :func:`exit_code_for`).

Every string printed for a person passes through :func:`p2pchat.text.terminal_safe`
here (in :func:`say`, :func:`warn`, tables, panels and errors), so text a peer controls
can never steer the terminal, whichever command shows it; JSON keeps values exact and
escapes the same characters the JSON way (:func:`p2pchat.text.json_safe`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from ..errors import (
    ConfigError,
    KeystoreCorruptError,
    KeystoreExistsError,
    KeystoreMissingError,
    NotFoundError,
    P2PChatError,
    PermissionDeniedError,
    UnsupportedVersionError,
    WrongPassphraseError,
)
from ..identity.home import Home, is_private
from ..text import json_safe, terminal_safe
from ._errors import NodeNotRunningError

if TYPE_CHECKING:
    from rich.console import Console

    from ..identity.keystore import KeystorePublic

__all__ = [
    "EXIT_CODES",
    "EXIT_CODES_HELP",
    "exit_code_for",
    "error_slug",
    "emit_json",
    "emit_json_line",
    "show_panel",
    "address_row",
    "show_lines",
    "show_table",
    "short_id",
    "identity_rows",
    "warn_if_exposed",
    "say",
    "one_line",
    "message_body",
    "warn",
    "report_error",
]

#: Exit status per error class, most specific first. 2 is also click's usage error.
EXIT_CODES: Sequence[tuple[type[BaseException], int, str]] = (
    (ConfigError, 2, "usage"),
    (KeystoreMissingError, 3, "keystore-missing"),
    (KeystoreExistsError, 4, "keystore-exists"),
    (WrongPassphraseError, 5, "wrong-passphrase"),
    (KeystoreCorruptError, 6, "keystore-corrupt"),
    (UnsupportedVersionError, 7, "unsupported-version"),
    (OSError, 8, "file-error"),
    (NodeNotRunningError, 9, "node-not-running"),
    (NotFoundError, 10, "not-found"),
    (PermissionDeniedError, 11, "permission-denied"),
    (P2PChatError, 1, "error"),
)

EXIT_CODES_HELP = (
    "Exit status: 0 success, 1 other error, 2 bad usage or input, 3 no keystore, "
    "4 keystore exists (use --force), 5 wrong passphrase, 6 keystore damaged, "
    "7 keystore format too new, 8 file system error, 9 no node running in this home, "
    "10 no such contact or conversation, 11 not allowed (RPC token scope, blocked contact)."
)


def exit_code_for(exc: BaseException) -> int:
    return next(code for kind, code, _ in EXIT_CODES if isinstance(exc, kind))


def error_slug(exc: BaseException) -> str:
    return next(slug for kind, _, slug in EXIT_CODES if isinstance(exc, kind))


def _console(*, stderr: bool = False) -> Console:
    from rich.console import Console  # rich costs ~50 ms to import: only when printing

    stream = sys.stderr if stderr else sys.stdout
    # Not a terminal: $COLUMNS if set, else wide enough that a 64-hex key is never folded.
    width = None if stream.isatty() else _columns(110)
    return Console(file=stream, width=width, highlight=False)


def _columns(default: int) -> int:
    import os

    value = os.environ.get("COLUMNS", "")
    return int(value) if value.isdigit() and int(value) >= 40 else default


def emit_json(value: Mapping[str, Any]) -> None:
    """One JSON object on stdout (indented for people who read it too)."""
    click.echo(json_safe(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)))


def emit_json_line(value: Mapping[str, Any]) -> None:
    """One JSON object on one line: the unit of every ``--follow --json`` stream."""
    line = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    click.echo(json_safe(line))


def one_line(text: str) -> str:
    """A peer-controlled name or label made inert and kept on one line."""
    return terminal_safe(text, single_line=True)


def message_body(text: str, *, indent: int = 4) -> str:
    """Peer-controlled message text made inert; its own lines are indented, so a line
    break in it can never pass for a line of our output (a forged "time  name: text")."""
    return terminal_safe(text).replace("\n", "\n" + " " * indent)


def say(message: str) -> None:
    """A line of plain text for a person on stdout (no markup: paths may contain "[")."""
    _console().print(terminal_safe(message), markup=False)


def warn(message: str) -> None:
    from rich.text import Text

    _console(stderr=True).print(Text.assemble(("Warning: ", "bold yellow"), terminal_safe(message)))


def warn_if_exposed(home: Home) -> None:
    """Warn when others may read the keystore (say, after a copy with a loose umask)."""
    path = home.keystore_path
    if path.is_file() and not (is_private(path) and is_private(home.path)):
        warn(
            f"{path} or its directory can be read by other users. Restrict it with "
            f"`chmod 700 {home.path} && chmod 600 {path}`."
        )


def identity_rows(public: KeystorePublic) -> list[tuple[str, str]]:
    created = datetime.fromtimestamp(public.created / 1000, tz=UTC)
    return [
        ("Fingerprint", public.fingerprint),
        ("Account key", public.account_key.hex()),
        ("Device key", public.device_key.hex()),
        ("Peer ID", public.peer_id),
        ("Created", created.strftime("%Y-%m-%d %H:%M:%S UTC")),
    ]


def show_qr(data: str) -> None:
    """``data`` as a QR code to scan from the screen (dark on light, any terminal theme)."""
    from rich.text import Text

    from ..qr import QR_STYLE, qr_text

    _console().print(Text(qr_text(data), style=QR_STYLE), soft_wrap=True)


def show_panel(title: str, rows: Sequence[tuple[str, str]], *, style: str = "green") -> None:
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    table = Table.grid(padding=(0, 1))  # 64 hex digits + label + border fit 80 columns
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")  # a long path folds; it is never cut short
    for label, value in rows:
        table.add_row(label, Text(terminal_safe(value)))  # Text, not markup
    title_text = Text(terminal_safe(title, single_line=True))
    _console().print(Panel(table, title=title_text, border_style=style, expand=False))


def address_row(addrs: Sequence[str]) -> tuple[str, list[str]]:
    """The panel value for listen addresses, and the lines to print after the panel.

    A multiaddr with its peer id is ~90 characters: folded inside a box at 80 columns it
    cannot be copied whole, yet people paste it into ``--bootstrap``. When one does not fit
    the panel, the panel says so and the addresses follow it unboxed, one per line, never
    broken by us (the terminal wraps them, and copies them as one line).
    """
    if not addrs:
        return "nowhere", []
    room = _console().width - 17  # borders, padding and the widest label ("Fingerprint")
    if max(len(a) for a in addrs) <= room:
        return "\n".join(addrs), []
    count = f"{len(addrs)} addresses" if len(addrs) > 1 else "1 address"
    return f"{count}, in full below", list(addrs)


def show_lines(lines: Sequence[str]) -> None:
    """Lines a person copies (addresses, codes): unboxed and never wrapped by rich."""
    from rich.text import Text

    console = _console()
    for line in lines:
        console.print(Text(terminal_safe(line, single_line=True)), soft_wrap=True)


def short_id(value: str) -> str:
    """A key or id as tables show it: enough to tell people apart, short enough for 80
    columns (peer ids share their "12D3KooW" start, so their end is shown)."""
    if len(value) <= 16:
        return value
    if value.startswith("12D3KooW"):
        return "…" + value[-10:]
    return value[:12] + "…"


def _wide() -> bool:
    from ._state import CliState

    ctx = click.get_current_context(silent=True)
    state = ctx.find_object(CliState) if ctx is not None else None
    return bool(state and state.wide)


def show_table(
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    empty: str,
    no_wrap: Sequence[str] = (),
) -> None:
    """A table for people; ``empty`` is said instead when there are no rows.

    Columns named in ``no_wrap`` hold keys and ids: shown short (:func:`short_id`), so
    the table fits 80 columns, or in full with ``--wide`` (never folded, so they stay
    copyable); the other columns fold only when they must.
    """
    if not rows:
        say(empty)
        return
    from rich.table import Table
    from rich.text import Text

    wide = _wide()
    ids = [column in no_wrap for column in columns]
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for column, is_id in zip(columns, ids, strict=True):
        table.add_column(column, overflow="fold", no_wrap=is_id, min_width=4)
    for row in rows:
        cells = [
            short_id(cell) if is_id and not wide else cell
            for cell, is_id in zip(row, ids, strict=True)
        ]
        table.add_row(*(Text(terminal_safe(cell)) for cell in cells))  # Text: not markup
    console = _console()
    if wide:  # full ids take their room: the lines are as long as they need to be
        console.width = max(console.width, 200)
    console.print(table)


def report_error(exc: BaseException, *, as_json: bool) -> int:
    """Tell the person (or program) what went wrong; return the exit status to use."""
    code = exit_code_for(exc)
    message = _message(exc)
    if as_json:
        emit_json({"error": {"type": error_slug(exc), "message": message, "exit_code": code}})
    else:
        from rich.text import Text

        _console(stderr=True).print(Text.assemble(("Error: ", "bold red"), terminal_safe(message)))
    return code


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}."
    return str(exc)

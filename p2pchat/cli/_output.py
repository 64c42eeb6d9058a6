"""Everything the CLI prints: rich panels for people, one JSON object for programs.

Results go to stdout; warnings and errors to stderr, so ``--json`` output stays one
parseable object even when a warning is shown. Errors are mapped to exit codes here
and nowhere else (:data:`EXIT_CODES`, :func:`exit_code_for`).
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
    "show_panel",
    "show_table",
    "identity_rows",
    "warn_if_exposed",
    "say",
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
    # Keys are 64 hex digits; never wrap them in the middle on a narrow or absent terminal.
    return Console(file=stream, width=None if stream.isatty() else 110, highlight=False)


def emit_json(value: Mapping[str, Any]) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


def say(message: str) -> None:
    """A line of plain text for a person on stdout (no markup: paths may contain "[")."""
    _console().print(message, markup=False)


def warn(message: str) -> None:
    from rich.text import Text

    _console(stderr=True).print(Text.assemble(("Warning: ", "bold yellow"), message))


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


def show_panel(title: str, rows: Sequence[tuple[str, str]], *, style: str = "green") -> None:
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    table = Table.grid(padding=(0, 1))  # 64 hex digits + label + border fit 80 columns
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")  # a long path folds; it is never cut short
    for label, value in rows:
        table.add_row(label, Text(value))  # Text, not markup: values are paths and keys
    _console().print(Panel(table, title=title, border_style=style, expand=False))


def show_table(
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    empty: str,
    no_wrap: Sequence[str] = (),
) -> None:
    """A table for people; ``empty`` is said instead when there are no rows.

    Columns named in ``no_wrap`` (keys, peer ids) are never folded, so they stay
    copyable; the others fold to make room.
    """
    if not rows:
        say(empty)
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column in no_wrap)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # Text: names are not markup
    _console().print(table)


def report_error(exc: BaseException, *, as_json: bool) -> int:
    """Tell the person (or program) what went wrong; return the exit status to use."""
    code = exit_code_for(exc)
    message = _message(exc)
    if as_json:
        emit_json({"error": {"type": error_slug(exc), "message": message, "exit_code": code}})
    else:
        from rich.text import Text

        _console(stderr=True).print(Text.assemble(("Error: ", "bold red"), message))
    return code


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}."
    return str(exc)

"""The ``p2pchat`` root command group.

The root group owns the global options and the one place where errors become messages
and exit codes (:meth:`_RootGroup.invoke`): commands raise ``P2PChatError`` subclasses
and never print tracebacks for bad input. Imports stay light: commands that need no
network (``keys ...``) must not import libp2p or trio, which cost about a second; the
commands that talk to a running node (``contacts``, ``dm``, ``peers``, ``status``)
import only the RPC client (trio, never libp2p), and only when they run.
"""

from __future__ import annotations

from pathlib import Path

import click

from .. import __version__
from ..errors import P2PChatError
from ._logging import configure_logging
from ._output import EXIT_CODES_HELP, report_error
from ._state import CliState
from .chat import chat
from .contacts import contacts
from .devices import devices
from .dm import dm
from .files import files
from .groups import groups
from .keys import keys
from .node import node
from .profile import profile
from .search import search
from .status import peers, status

__all__ = ["cli", "INTERRUPTED"]

#: The exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130


class _RootGroup(click.Group):
    def invoke(self, ctx: click.Context) -> None:
        # A command's return value is dropped (as click's standalone mode drops it), so
        # what the non-standalone entry point (p2pchat.cli.main) gets back is None or
        # the status of a ctx.exit().
        try:
            super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("", err=True)  # end the line the ^C was echoed on
            ctx.exit(INTERRUPTED)
        except (P2PChatError, OSError) as exc:
            state = ctx.find_object(CliState)
            code = report_error(exc, as_json=state is not None and state.json)
            ctx.exit(code)


@click.group(cls=_RootGroup, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, "--version", prog_name="p2pchat")
@click.option(
    "--home",
    "home",
    type=click.Path(file_okay=False, path_type=Path),
    help="The node's home directory [env P2PCHAT_HOME; default: the user data directory].",
)
@click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the keystore passphrase from this file [else env P2PCHAT_PASSPHRASE, else a "
    "prompt on a terminal]. One trailing newline is ignored.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.pass_context
def cli(
    ctx: click.Context,
    home: Path | None,
    passphrase_file: Path | None,
    as_json: bool,
    verbose: int,
) -> None:
    """p2pchat: a peer-to-peer, end-to-end encrypted messenger."""
    state = ctx.ensure_object(CliState)
    state.home_option = home
    state.passphrase_file = passphrase_file
    state.json = state.json or as_json
    state.verbose = verbose
    if verbose:
        configure_logging(verbose)


for _command in (
    keys,
    node,
    chat,
    contacts,
    devices,
    dm,
    groups,
    files,
    search,
    profile,
    peers,
    status,
):
    cli.add_command(_command)

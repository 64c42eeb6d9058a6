"""The ``p2pchat`` command line.

The commands live in the submodules; the root group (global options, and the one place
where errors become messages and exit codes) in :mod:`p2pchat.cli._root`. This module is
the console-script entry point and stays light on purpose: Ctrl-C while the program is
still loading must end it like Ctrl-C at any later moment, with exit status 130 and no
traceback, so everything is imported inside :func:`main`. Imports stay light further
down as well: commands that need no network (``keys ...``) never import libp2p or trio;
the commands that talk to a running node import only the RPC client, when they run.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing itself is not imported before main() guards Ctrl-C
if TYPE_CHECKING:
    from ._root import cli as cli

__all__ = ["main", "cli"]


def __getattr__(name: str) -> object:
    if name == "cli":
        from ._root import cli

        return cli
    raise AttributeError(f"module 'p2pchat.cli' has no attribute {name!r}")


def main() -> None:
    """Console-script entry point (``p2pchat = "p2pchat.cli:main"``).

    Not click's standalone mode: that turns a Ctrl-C landing outside a command (while
    click parses the arguments, or at a prompt) into "Aborted!" and status 1. Here
    click's exceptions are mapped as click maps them, except that an interrupt is
    always status 130 with no message (the ^C line is ended, nothing more).
    """
    try:
        import click

        from ._root import INTERRUPTED, cli

        try:
            # _RootGroup.invoke returns None, so an int here is a ctx.exit() code.
            status = cli.main(prog_name="p2pchat", standalone_mode=False)
        except click.exceptions.Abort as exc:
            if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
                # click has ended the ^C line when it caught the interrupt itself
                # (then it is the cause); at a confirm prompt it has not.
                if exc.__cause__ is None:
                    sys.stderr.write("\n")
                sys.exit(INTERRUPTED)
            click.echo("Aborted!", err=True)  # Ctrl-D at a prompt, or a refused confirm
            sys.exit(1)
        except click.ClickException as exc:  # a usage error: click's message and status
            exc.show()
            sys.exit(exc.exit_code)
        sys.exit(status if isinstance(status, int) else 0)
    except KeyboardInterrupt:  # while importing, or in the handlers above
        sys.stderr.write("\n")
        sys.exit(130)

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
    """Console-script entry point (``p2pchat = "p2pchat.cli:main"``)."""
    try:
        from ._root import cli

        cli(prog_name="p2pchat")
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        sys.exit(130)

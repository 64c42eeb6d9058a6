"""Errors only the command line raises (subclasses of the one tree in ``p2pchat.errors``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import NetworkError

__all__ = ["NodeNotRunningError"]


class NodeNotRunningError(NetworkError):
    """A command that talks to the node found none serving RPC in the home."""

    def __init__(self, home: Path) -> None:
        super().__init__(f"no node is running in {home}; start one with `p2pchat node run`")
        self.home = home

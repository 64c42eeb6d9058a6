"""Errors only the command line raises (subclasses of the one tree in ``p2pchat.errors``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import NetworkError

__all__ = ["NodeNotRunningError", "sole_error"]


class NodeNotRunningError(NetworkError):
    """A command that talks to the node found none serving RPC in the home."""

    def __init__(self, home: Path) -> None:
        super().__init__(f"no node is running in {home}; start one with `p2pchat node run`")
        self.home = home


def sole_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error inside nested groups (cancellations aside), else the group itself.

    libp2p and the node nest a nursery per service: an error (or a Ctrl-C) inside them
    reaches ``trio.run`` wrapped in groups, and the root command must see it bare.
    """
    import trio

    leaves: list[BaseException] = []

    def collect(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                collect(inner)
        elif not isinstance(exc, trio.Cancelled):
            leaves.append(exc)

    collect(group)
    return leaves[0] if len(leaves) == 1 else group

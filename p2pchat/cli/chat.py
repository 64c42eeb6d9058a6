"""``p2pchat chat``: the terminal messenger (Textual), on the node running in the home."""

from __future__ import annotations

import click

from ._client import _SOCKET
from ._errors import NodeNotRunningError
from ._state import CliState, pass_state

__all__ = ["chat"]


@click.command("chat")
@pass_state
def chat(state: CliState) -> None:
    """Open the chat window: inbox, conversations, contacts and groups in one place.

    Talks to the node started with `p2pchat node run` (same --home), over its RPC
    socket like any other app. Keys are shown at the bottom; Ctrl+Q quits.
    """
    home = state.home.path
    if not (home / _SOCKET).exists():
        raise NodeNotRunningError(home)
    from ..tui import ChatApp  # Textual loads only for this command

    ChatApp(home).run()

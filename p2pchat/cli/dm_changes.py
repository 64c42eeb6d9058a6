"""``p2pchat dm react | edit | delete``: change a message of a direct conversation.

MESSAGE is a message id, a unique start of one (at least 4 hex digits; ``dm read --ids``
shows them), or ``last``: the latest message (for edit and delete, your latest).
Receivers apply an edit or a deletion only to their sender's own messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..errors import NotFoundError
from ._client import CALL_TIMEOUT, connected
from ._output import emit_json, say
from ._state import CliState, json_option, pass_state

if TYPE_CHECKING:
    from ..client import SyncClient

__all__ = ["react", "edit", "delete", "find_message"]


def find_message(client: SyncClient, peer: str, message: str, *, own: bool) -> str:
    """The id of the message named by ``message`` (4+ hex digits of its id, or ``last``)
    in the conversation with ``peer`` (``own``: only ours)."""
    history = client.call("dm.history", {"conversation": peer, "limit": 500}, timeout=CALL_TIMEOUT)
    candidates = [m for m in history if not own or m["direction"] == "out"]
    wanted = message.strip().lower()
    if wanted == "last":
        found = candidates[-1:]
    elif len(wanted) < 4:
        raise click.UsageError("give at least 4 hex digits of the message id, or `last`")
    else:
        found = [m for m in candidates if m["message_id"].startswith(wanted)]
    if not found:
        whose = "of yours " if own else ""
        raise NotFoundError(f"no message {whose}{message!r} there (`p2pchat dm read --ids`)")
    if len(found) > 1:
        raise click.UsageError(f"{message!r} names several messages: give more of it")
    return str(found[0]["message_id"])


def _change(state: CliState, method: str, peer: str, message: str, own: bool, **extra: Any) -> None:
    with connected(state) as client:
        target = find_message(client, peer, message, own=own)
        sent = client.call(method, {"to": peer, "target": target, **extra}, timeout=CALL_TIMEOUT)
    if state.json:
        emit_json({"message": sent})
    else:
        say(f"Queued (message {sent['message_id'][:8]}, changing {target[:8]}).")


@click.command()
@click.argument("peer")
@click.argument("message")
@click.argument("emoji")
@click.option("--off", is_flag=True, help="Take the reaction back.")
@json_option
@pass_state
def react(state: CliState, peer: str, message: str, emoji: str, off: bool) -> None:
    """React with EMOJI to MESSAGE of the conversation with PEER.

    \b
    JSON: {"message": message} (the reaction, delivered like any message)
    """
    _change(state, "dm.react", peer, message, False, emoji=emoji, on=not off)


@click.command()
@click.argument("peer")
@click.argument("message")
@click.argument("text", nargs=-1, required=True)
@json_option
@pass_state
def edit(state: CliState, peer: str, message: str, text: tuple[str, ...]) -> None:
    """Replace the text of your MESSAGE to PEER with TEXT.

    \b
    JSON: {"message": message} (the edit, delivered like any message)
    """
    _change(state, "dm.edit", peer, message, True, text=" ".join(text))


@click.command()
@click.argument("peer")
@click.argument("message")
@json_option
@pass_state
def delete(state: CliState, peer: str, message: str) -> None:
    """Delete your MESSAGE to PEER: their node stops showing its text and files.

    Their node has already received it: it stops showing it (the original stays sealed
    in its store), and nothing can make anyone unread what they read.

    \b
    JSON: {"message": message} (the deletion, delivered like any message)
    """
    _change(state, "dm.delete", peer, message, True)

"""``p2pchat dm``: send, read and list direct messages through the running node.

PEER is an account key (64 hex digits) or the display name of one contact.
``dm read`` prints a conversation oldest first, with delivery marks on what you sent,
and marks it read; ``--follow`` then keeps printing from the node's event stream, which
is subscribed *before* the history is read, so nothing falls between the two.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import click

from ..errors import NotFoundError
from ._client import CALL_TIMEOUT, call, connected
from ._output import emit_json, emit_json_line, message_body, one_line, say, show_table, warn
from ._state import CliState, json_option, pass_state, wide_option
from .dm_changes import delete, edit, find_message, react
from .files import add_files, files_line

if TYPE_CHECKING:
    from ..client import SyncClient, SyncSubscription

__all__ = ["dm", "MARKS", "format_message"]

#: Delivery marks on sent messages: queued, sent (reached a device or mailbox), delivered.
MARKS: Final = {"queued": "…", "sent": "✓", "delivered": "✓✓", "failed": "✗"}
_FOLLOWED: Final = ["dm.received", "dm.delivery"]


@click.group()
def dm() -> None:
    """Direct messages (needs a running node: `p2pchat node run`).

    PEER is an account key (64 hex digits) or the display name of one contact. With
    --json, a message is {"conversation_id", "message_id", "seq", "direction" (in/out),
    "state" (queued/sent/delivered/failed), "failure_reason", "waiting" (why a
    queued or sent message is not delivered yet), "author", "device",
    "content_type", "text", "body", "sent_at", "received_at"} (the words of
    `p2pchat.vocabulary`; "sender", "sender_device" are older names, deprecated).
    """


@dm.command()
@click.argument("peer")
@click.argument("text", nargs=-1)
@click.option(
    "--file",
    "-f",
    "paths",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Attach a file (repeat for several); PEER fetches it from you.",
)
@json_option
@pass_state
def send(state: CliState, peer: str, text: tuple[str, ...], paths: tuple[str, ...]) -> None:
    """Send TEXT to PEER (words are joined with spaces), with --file attachments.

    The message is queued at once and delivered in the background, also while PEER is
    offline (retries, and their mailbox if they use one). Attached files are encrypted
    and served by your node; PEER's node fetches them (small ones at once).

    \b
    JSON: {"message": message}
    """
    if not text and not paths:
        raise click.UsageError("give some TEXT, a --file, or both")
    params: dict[str, Any] = {"to": peer, "text": " ".join(text)}
    if paths:
        with connected(state) as client:
            params["files"] = add_files(client, paths, show=not state.json and _tty())
            message = client.call("dm.send", params, timeout=CALL_TIMEOUT)
    else:
        message = call(state, "dm.send", params)
    if state.json:
        emit_json({"message": message})
    else:
        say(f"Queued {MARKS['queued']} (message {message['message_id'][:8]}).")


def _tty() -> bool:
    import sys

    return sys.stderr.isatty()


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M")


def format_message(message: dict[str, Any], peer_name: str, *, ids: bool = False) -> str:
    """One line for a person: time, who, text, reactions, and a delivery mark on what we
    sent (``ids``: the start of the message id first)."""
    mine = message["direction"] == "out"
    who = "me" if mine else one_line(peer_name)
    text = message_body(message["text"]) if message["text"] else ""
    attached = files_line(message)
    text = " ".join(t for t in (text, attached) if t) or f"[{message['content_type']}]"
    if message.get("deleted"):
        text = "(deleted)"
    elif message.get("edited"):
        text += " (edited)"
    reactions = message.get("reactions") or {}
    if reactions:
        text += "  [" + " ".join(f"{one_line(e)} {n}" for e, n in reactions.items()) + "]"
    if ids:
        who = f"{message['message_id'][:8]}  {who}"
    mark = f"  {MARKS.get(message['state'], message['state'])}" if mine else ""
    if mine and message["state"] == "failed" and message.get("failure_reason"):
        mark += f" failed: {one_line(message['failure_reason'])}"
    elif mine and message.get("waiting"):
        mark += f" waiting: {one_line(message['waiting'])} (id {message['message_id'][:8]})"
    return f"{_time(message['sent_at'])}  {who}: {text}{mark}"


def _peer_name(client: SyncClient, conversation_id: str) -> str:
    for conversation in client.call("dm.conversations", timeout=CALL_TIMEOUT):
        if conversation["conversation_id"] == conversation_id:
            return str(conversation["label"] or conversation["conversation_id"])
    return conversation_id.removeprefix("dm:")[:9]


def _conversation_of(client: SyncClient, peer: str) -> str:
    """The conversation id for PEER, even before any message exists (for --follow)."""
    cleaned = peer.strip().lower()
    if len(cleaned) == 64 and all(ch in "0123456789abcdef" for ch in cleaned):
        return "dm:" + cleaned
    named = [
        c["account"]
        for c in client.call("contacts.list", timeout=CALL_TIMEOUT)
        if c["name"].casefold() == peer.strip().casefold()
    ]
    if len(named) != 1:
        raise NotFoundError(f"no conversation with {peer!r}")
    return f"dm:{named[0]}"


@dm.command()
@click.argument("peer")
@click.option(
    "--limit",
    type=click.IntRange(1, 500),
    default=50,
    show_default=True,
    help="How many of the latest messages to show.",
)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new messages until Ctrl-C.")
@click.option("--ids", is_flag=True, help="Show the start of each message id (for react/edit).")
@click.option(
    "--count",
    type=click.IntRange(1),
    metavar="N",
    help="With --follow: stop after N new messages (for scripts).",
)
@json_option
@pass_state
def read(
    state: CliState, peer: str, limit: int, follow: bool, ids: bool, count: int | None
) -> None:
    """Print the conversation with PEER, oldest first, and mark it read.

    Sent messages carry a mark: … queued, ✓ sent, ✓✓ delivered, ✗ failed. With
    --follow, new messages and delivery changes are printed as they happen.

    \b
    JSON: {"conversation_id", "messages": [message, ...]}; with --follow, then one
    JSON object per line for each new event: {"event": {"type": "dm.received" or
    "dm.delivery", ...}}.
    """
    with connected(state) as client:
        subscription = client.subscribe(_FOLLOWED) if follow else None
        try:
            try:
                history = client.call(
                    "dm.history", {"conversation": peer, "limit": limit}, timeout=CALL_TIMEOUT
                )
            except NotFoundError:
                if subscription is None:
                    raise
                history = []  # nothing yet: wait for the first message
            conversation_id = (
                history[0]["conversation_id"] if history else _conversation_of(client, peer)
            )
            name = _peer_name(client, conversation_id)
            if history:
                client.call("dm.mark_read", {"conversation": conversation_id}, timeout=CALL_TIMEOUT)
            if state.json:
                first = {"conversation_id": conversation_id, "messages": history}
                (emit_json_line if follow else emit_json)(first)
            elif history:
                for message in history:
                    say(format_message(message, name, ids=ids))
            elif subscription is None:
                say("No messages yet.")
            if subscription is not None and not state.json:
                say("Waiting for new messages (Ctrl-C to stop)...")
            if subscription is not None:
                _follow(
                    client, subscription, conversation_id, name, as_json=state.json, count=count
                )
        finally:
            if subscription is not None:
                subscription.close()


def _follow(
    client: SyncClient,
    subscription: SyncSubscription,
    conversation_id: str,
    name: str,
    *,
    as_json: bool,
    count: int | None,
) -> None:
    """Print events of the conversation until Ctrl-C (or ``count`` new messages)."""
    from ..client import Gap

    received = 0
    for item in subscription:
        if isinstance(item, Gap):
            warn("some events were missed; run `p2pchat dm read` again to see everything")
            continue
        data = item.data
        if data.get("conversation_id") != conversation_id:
            continue
        if as_json:
            emit_json_line({"event": data})
        elif item.type == "dm.received":
            shown = {**data, "direction": "in", "state": "delivered"}
            say(format_message(shown, name))
        else:
            mark = MARKS.get(data["state"], data["state"])
            say(f"  {mark} message {data['message_id'][:8]} {data['state']}")
        if item.type == "dm.received":
            client.call("dm.mark_read", {"conversation": conversation_id}, timeout=CALL_TIMEOUT)
            received += 1
            if count is not None and received >= count:
                return


@dm.command()
@click.argument("peer")
@click.argument("message", required=False)
@json_option
@pass_state
def cancel(state: CliState, peer: str, message: str | None) -> None:
    """Cancel a queued message to PEER (one never sent, e.g. to a mistyped key).

    MESSAGE is its id, or the start of it as `dm read` shows it; without MESSAGE, every
    queued message to PEER is cancelled. A cancelled message stays listed, failed.

    \b
    JSON: {"cancelled": [message, ...]}
    """
    with connected(state) as client:
        history = client.call(
            "dm.history", {"conversation": peer, "limit": 500}, timeout=CALL_TIMEOUT
        )
        queued = [m for m in history if m["direction"] == "out" and m["state"] == "queued"]
        if message is not None:
            wanted = message.strip().lower()
            queued = [m for m in queued if m["message_id"].startswith(wanted)]
            if len(queued) > 1:
                raise click.UsageError(f"{message!r} names several messages: give more of it")
        if not queued:
            raise NotFoundError(
                "no queued message to cancel there (`p2pchat dm read` shows the states)"
            )
        cancelled = [
            client.call("dm.cancel", {"message_id": m["message_id"]}, timeout=CALL_TIMEOUT)
            for m in queued
        ]
    if state.json:
        emit_json({"cancelled": cancelled})
    else:
        for m in cancelled:
            say(f"Cancelled {MARKS['failed']} message {m['message_id'][:8]}.")


@dm.command()
@click.argument("peer")
@click.argument("message", required=False)
@json_option
@pass_state
def deliveries(state: CliState, peer: str, message: str | None) -> None:
    """Show where one of our messages to PEER stands on each device it went to.

    A message goes to every device of PEER and to our own other devices; its mark in
    `dm read` sums them up (✓✓ once one of PEER's devices has it). MESSAGE is 4+ hex
    digits of its id (`dm read --ids`) or `last`; without MESSAGE, our latest to PEER.

    \b
    JSON: {"message_id", "state", "devices": [{"device", "own", "state", "reason", ...}]}
    """
    with connected(state) as client:
        target = find_message(client, peer, message or "last", own=True)
        found = client.call("dm.deliveries", {"message_id": target}, timeout=CALL_TIMEOUT)
    if state.json:
        emit_json(found)
        return
    say(f"Message {found['message_id'][:8]}: {MARKS.get(found['state'], found['state'])}")
    for d in found["devices"]:
        whose = "our device" if d["own"] else "their device"
        mark = MARKS.get(d["state"], d["state"])
        reason = f" ({one_line(d['reason'])})" if d["reason"] else ""
        say(f"  {whose} {d['device'][:12]}  {mark} {d['state']}{reason}")


dm.add_command(react)
dm.add_command(edit)
dm.add_command(delete)


@dm.command("list")
@wide_option
@json_option
@pass_state
def list_(state: CliState) -> None:
    """List conversations, most recent first, with unread counts.

    \b
    JSON: {"conversations": [{"conversation_id", "kind", "peer", "name", "label",
           "last_activity", "unread"}, ...]}
    """
    found = call(state, "dm.conversations")
    if state.json:
        emit_json({"conversations": found})
        return
    rows = [
        (
            c["label"] or "",
            str(c["unread"]) if c["unread"] else "",
            _time(c["last_activity"]),
            c["peer"] or c["conversation_id"],
        )
        for c in found
    ]
    show_table(
        None,
        ("Name", "Unread", "Last activity", "Account key"),
        rows,
        empty="No conversations yet. Start one with `p2pchat dm send PEER TEXT`.",
        no_wrap=("Account key",),
    )

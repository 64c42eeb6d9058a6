"""What a running node's terminal says: one readable line per event a person cares about.

``p2pchat node run`` prints, through the ``p2pchat.node.events`` logger, a line for a
message received (who, and its size: the text itself stays in the store), a receipt or
a failure with its reason, a contact request, a peer connecting or leaving, a group
message. People are named by their labels (README "Names": our name for a contact,
marked until verified, or the name they claim, marked as a claim); everything a peer
chose is made inert by the log formatter (:mod:`._logging`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from p2pchat_crypto.identity import fingerprint_of

from ..api.shapes import account_label
from ..events import (
    ContactChanged,
    ContactRequestReceived,
    DeliveryChanged,
    Event,
    EventStream,
    GroupMessage,
    MessageReceived,
    PeerConnected,
    PeerDisconnected,
)

if TYPE_CHECKING:
    from ..node import Node

__all__ = ["describe", "narrate"]

logger = logging.getLogger("p2pchat.node.events")

#: The contact names are read again at most this often (seconds): a busy group's
#: messages (tens a second) cost one contact-list read a second, not one each, and a
#: renamed contact shows under its new name at most this late.
_NAMES_TTL_S = 1.0


def describe(event: Event, names: dict[bytes, str]) -> str | None:
    """The line for ``event`` (``None``: not worth a line)."""

    def who(account: bytes) -> str:
        return names.get(account) or fingerprint_of(account)[:9]

    if isinstance(event, MessageReceived):
        request = " (a contact request: `p2pchat contacts requests`)" if event.is_request else ""
        size = len(event.text)
        return f"message from {who(event.sender)}: {size} characters{request}"
    if isinstance(event, DeliveryChanged):
        short = event.message_id.hex()[:8]
        if event.state == "delivered":
            return f"message {short} delivered ✓✓"
        if event.state == "failed":
            return f"message {short} failed: {event.reason or 'no reason given'}"
        return None  # queued/sent: the sender's own command already said so
    if isinstance(event, ContactRequestReceived):
        return f"contact request from {who(event.account)}"
    if isinstance(event, PeerConnected):
        return f"peer connected: {event.peer_id}"
    if isinstance(event, PeerDisconnected):
        return f"peer disconnected: {event.peer_id}"
    if isinstance(event, GroupMessage):
        return f"group {event.group_id.hex()[:8]}: {event.kind} from {who(event.author)}"
    return None


async def narrate(node: Node, stream: EventStream) -> None:
    """Log :func:`describe` of every event of ``stream`` until cancelled. The stream is
    entered before the node starts, so what arrives during start-up is told too."""
    names: dict[bytes, str] = {}
    read_at = float("-inf")
    async for event in stream:
        if isinstance(event, ContactChanged):
            read_at = float("-inf")  # a contact renamed, added or removed: read again
        if describe(event, {}) is None:
            continue  # not worth a line: no names needed
        if isinstance(event, _NAMING) and trio.current_time() - read_at >= _NAMES_TTL_S:
            names = {c.account: account_label(c.account, c) for c in await node.contacts()}
            names[node.account_key] = "me"  # what another of our devices sent
            read_at = trio.current_time()
        line = describe(event, names)
        if line is not None:
            logger.info("%s", line)


#: The events whose line names a person.
_NAMING = (MessageReceived, ContactRequestReceived, GroupMessage)

"""Our messages a device of the recipient missed because it appeared after they were sent
(protocol-spec/devices.md section 7, fan-out).

A sender learns an account's new device from its node's ``p2pchat/device-list`` notice or
from a DHT look-up, perhaps a little after the device was certified; what this device
sent to the account meanwhile went to its other devices only. Such messages are queued
for the new device too, once (a message that already has a delivery state on that device
is never queued for it again), bounded to the newest :data:`MAX_CATCH_UP` of the
conversation and to :data:`CATCH_UP_WINDOW_MS`. The recipient stores messages by id, so a
message it already holds (e.g. from a history sync) is not stored or shown twice.
"""

from __future__ import annotations

from ..storage.base import Store
from ..storage.records import DeliveryState, Direction, Message

__all__ = ["CATCH_UP_WINDOW_MS", "MAX_CATCH_UP", "missed_by"]

#: The newest messages of a conversation a new device may catch up on, at most.
MAX_CATCH_UP = 200
#: How far back (ms) a new device catches up on our messages, at most.
CATCH_UP_WINDOW_MS = 24 * 3600 * 1000


async def missed_by(
    store: Store,
    *,
    conversation_id: str,
    own_device: bytes,
    device: bytes,
    since: int,
    now: int,
) -> list[Message]:
    """Our messages of ``conversation_id`` sent by ``own_device`` at or after ``since``
    (and within the window) that never went to ``device``, oldest first. Messages still
    waiting for the account's devices to be resolved are left out: the worker expands
    them to every current device, the new one included."""
    floor = max(since, now - CATCH_UP_WINDOW_MS)
    messages = await store.list_messages(conversation_id, limit=MAX_CATCH_UP)
    candidates = [
        m
        for m in messages
        if m.direction is Direction.OUT
        and m.sender_device == own_device
        and m.sent_at >= floor
        and m.state is not DeliveryState.FAILED
    ]
    if not candidates:
        return []
    unresolved = {
        item.message_id
        for item in await store.due_outbox(2**62, limit=2**31)
        if item.conversation_id == conversation_id and item.destination_device is None
    }
    missed = []
    for message in candidates:
        if message.message_id in unresolved:
            continue
        deliveries = await store.list_device_deliveries(message.message_id)
        if all(d.device != device for d in deliveries):
            missed.append(message)
    return missed

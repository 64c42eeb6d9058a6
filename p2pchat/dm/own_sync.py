"""Reads and receipts kept in step between the devices of our account (protocol-spec/
devices.md section 7, wire.md section 7: node-to-node content ``p2pchat/dm-sync``).

When this device marks a conversation read, or learns that one of our messages reached
a device of its recipient, it tells our other devices, inside their pairwise sessions
(hidden content, fanned out like any DM to our own current devices). A device accepts
``p2pchat/dm-sync`` only from its own account, and never answers it (no echo).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..errors import NotFoundError, WireError
from ..events import DeliveryChanged, EventBus
from ..protocol.content import Content
from ..storage.base import Store
from ..storage.records import DeliveryState, Direction
from .service import DirectMessages
from .storing import dm_conversation_id

__all__ = ["DM_SYNC_CONTENT_TYPE", "MAX_SYNC_IDS", "OwnSync"]

logger = logging.getLogger(__name__)

DM_SYNC_CONTENT_TYPE = "p2pchat/dm-sync"
#: Message ids in one ``delivered`` list at most (a receipt names at most 256).
MAX_SYNC_IDS = 256


class OwnSync:
    """See the module docstring."""

    def __init__(
        self, *, dm: DirectMessages, store: Store, events: EventBus, clock: Callable[[], int]
    ) -> None:
        self._dm = dm
        self._store = store
        self._events = events
        self._clock = clock
        self._account = dm.targets.own_account
        self.stats = {"sent": 0, "applied": 0}
        dm.control_handlers[DM_SYNC_CONTENT_TYPE] = self._receive
        dm.on_delivered = self.delivered

    def __repr__(self) -> str:
        return f"<OwnSync {self.stats}>"

    async def _tell(self, body: dict[str, object]) -> None:
        if not self._dm.targets.own_others():
            return  # a single device: nobody to tell
        content = Content(type=DM_SYNC_CONTENT_TYPE, body=body, text="")
        await self._dm.send_hidden(self._account, content)
        self.stats["sent"] += 1

    async def read(self, peer: bytes) -> None:
        """We read the conversation with ``peer``: so do our other devices."""
        await self._tell({"read": peer})

    async def delivered(self, message_ids: list[bytes]) -> None:
        """Our messages reached a device of their recipient: our other devices show it."""
        for start in range(0, len(message_ids), MAX_SYNC_IDS):
            await self._tell({"delivered": message_ids[start : start + MAX_SYNC_IDS]})

    async def _receive(self, account: bytes, device: bytes, content: Content) -> None:
        if account != self._account:
            raise WireError("wrong-sender", "dm-sync comes only from our own devices")
        read = content.body.get("read")
        delivered = content.body.get("delivered")
        if read is not None:
            if not (isinstance(read, bytes) and len(read) == 32):
                raise WireError("bad-value", "read names an account key")
            try:
                await self._store.mark_read(dm_conversation_id(read))
            except NotFoundError:
                return  # a conversation this device does not have
            self.stats["applied"] += 1
        if delivered is not None:
            if not (
                isinstance(delivered, list | tuple)
                and len(delivered) <= MAX_SYNC_IDS
                and all(isinstance(i, bytes) and len(i) == 16 for i in delivered)
            ):
                raise WireError("bad-value", "delivered lists 16-byte message ids")
            for message_id in delivered:
                await self._mark_delivered(message_id)

    async def _mark_delivered(self, message_id: bytes) -> None:
        message = await self._store.get_message(message_id)
        if (
            message is None
            or message.direction is not Direction.OUT
            or message.state is DeliveryState.DELIVERED
        ):
            return
        await self._store.set_delivery(message_id, DeliveryState.DELIVERED)
        self._events.publish(
            DeliveryChanged(
                conversation_id=message.conversation_id,
                message_id=message_id,
                state="delivered",
            )
        )
        self.stats["applied"] += 1

"""The direct-message half of the embedding API (mixed into :class:`p2pchat.node.Node`):
send, cancel, look up and list direct messages and conversations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..dm.own_sync import OwnSync
from ..dm.service import DirectMessages, dm_conversation_id
from ..errors import ConfigError, NotFoundError
from ..protocol.content import Content, MediaRef
from ..storage.base import Store
from ..storage.records import Conversation, DeviceDelivery, Direction, Message
from .contacts import parse_account
from .files import PathLike

__all__ = ["DmsApi"]


class DmsApi:
    """Direct messages and conversations."""

    _own_sync: OwnSync | None

    if TYPE_CHECKING:  # provided by Node and the other mixins, which come later in the MRO

        @property
        def _s(self) -> Store: ...

        @property
        def _dms(self) -> DirectMessages: ...

        async def _attach(self, files: Sequence[PathLike | MediaRef]) -> list[MediaRef]: ...

        def _with_attachments(self, text: str, refs: list[MediaRef]) -> Content: ...

        def _files_sent(self, conversation: str, content: Content) -> None: ...

    async def send_dm(
        self,
        to: str | bytes,
        text: str | None = None,
        *,
        content: Content | None = None,
        reply_to: bytes | None = None,
        attachments: Sequence[PathLike | MediaRef] = (),
    ) -> Message:
        """Queue a direct message; delivery continues in the background (see events).

        ``attachments``: files sealed into our blob store and named in the message; the
        recipient fetches them from us (protocol-spec/blobs.md)."""
        account = parse_account(to)
        if content is None:
            if text is None and not attachments:
                raise ConfigError("send_dm needs text, content or attachments")
            content = self._with_attachments(text or "", await self._attach(attachments))
        elif attachments:
            raise ConfigError("give either content or attachments, not both")
        self._files_sent(dm_conversation_id(account), content)
        return await self._dms.send(account, content, reply_to=reply_to)

    async def send_dms(
        self, to: str | bytes, messages: Sequence[str | Content], *, reply_to: bytes | None = None
    ) -> list[Message]:
        """Queue several direct messages to one account, in this order, as one batch: one
        transaction and one fsync for all (all or none are queued), written to the
        recipient together and acknowledged together. Texts or :class:`Content`; at most
        ``MAX_SEND_BATCH`` (256). ``reply_to`` applies to each."""
        account = parse_account(to)
        contents = [
            m if isinstance(m, Content) else Content(type="p2pchat/text", body={}, text=m)
            for m in messages
        ]
        conversation = dm_conversation_id(account)
        for content in contents:
            self._files_sent(conversation, content)
        return await self._dms.send_many(account, [(c, reply_to) for c in contents])

    async def cancel_dm(self, message_id: bytes) -> Message:
        """Take back a message still ``queued`` (never sent): it fails as ``cancelled``."""
        return await self._dms.cancel(message_id)

    async def message(self, message_id: bytes) -> Message:
        """One stored message (direct), by id."""
        message = await self._s.get_message(message_id)
        if message is None:
            raise NotFoundError("no such message")
        return message

    async def dm_deliveries(self, message_id: bytes) -> list[DeviceDelivery]:
        """Where our message stands on each device it went to (fan-out): the recipient's
        devices and our own other devices (the message's ``state`` summarises them)."""
        message = await self._s.get_message(message_id)
        if message is None or message.direction is not Direction.OUT:
            raise NotFoundError("no such message of yours")
        return await self._s.list_device_deliveries(message_id)

    def waiting_reason(self, message_id: bytes) -> str | None:
        """Why our undelivered message waits (the last failed attempt), or ``None``."""
        return self._dms.waiting(message_id)

    async def conversations(self) -> list[Conversation]:
        return await self._s.list_conversations()

    async def history(
        self,
        conversation: str | bytes,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int = 50,
    ) -> list[Message]:
        """Messages of a conversation (id, or a peer's account key), oldest first."""
        conversation_id = (
            conversation
            if isinstance(conversation, str) and ":" in conversation
            else dm_conversation_id(parse_account(conversation))
        )
        if await self._s.get_conversation(conversation_id) is None:
            raise NotFoundError("no such conversation")
        return await self._s.list_messages(
            conversation_id, before_seq=before_seq, after_seq=after_seq, limit=limit
        )

    async def mark_read(self, conversation_id: str) -> None:
        await self._s.mark_read(conversation_id)
        if conversation_id.startswith("dm:") and self._own_sync is not None:
            await self._own_sync.read(bytes.fromhex(conversation_id.removeprefix("dm:")))

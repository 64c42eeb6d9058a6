"""Reactions, edits and deletions of direct messages (mixed into :class:`p2pchat.node.Node`).

They travel as DMs whose content is an amendment (``protocol/dm_amend.py``,
wire.md §7); :meth:`DmChangesApi.folded_history` reads a conversation with them folded
into the messages they change. Every receiver applies the rules itself (an edit or a
delete of someone else's message changes nothing); the checks here only keep our own
node from sending what receivers would ignore.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError, NotFoundError, P2PChatError
from ..protocol.content import Content, DeleteBody, EditBody, ReactBody, check_outgoing
from ..protocol.dm_amend import Folded, FoldInput, fold_amendments
from ..storage.base import Store
from ..storage.records import Direction, Message
from .contacts import parse_account
from .files import PathLike

if TYPE_CHECKING:
    from ..protocol.content import MediaRef

__all__ = ["DmChangesApi", "FoldedMessage", "AMEND_SCAN_LIMIT"]

#: How many later messages a history page looks through for amendments of its messages
#: (a reaction or edit sent further away than this is not shown on that page).
AMEND_SCAN_LIMIT = 5000
_CHUNK = 500
_CONTENT_MAX = 64 * 1024


@dataclass(frozen=True, slots=True)
class FoldedMessage:
    """A stored message and what later reactions, edits and deletions did to it."""

    message: Message
    content: Content | None
    changes: Folded | None


def _content(message: Message) -> Content | None:
    try:
        return Content.from_bytes(message.body, max_size=_CONTENT_MAX)
    except (P2PChatError, ValueError):
        return None


class DmChangesApi:
    """React to, edit and delete direct messages; read history with them folded in."""

    @property
    def _s(self) -> Store:
        raise NotImplementedError

    async def send_dm(
        self,
        to: str | bytes,
        text: str | None = None,
        *,
        content: Content | None = None,
        reply_to: bytes | None = None,
        attachments: Sequence[PathLike | MediaRef] = (),
    ) -> Message:
        raise NotImplementedError

    async def history(
        self,
        conversation: str | bytes,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int = 50,
    ) -> list[Message]:
        raise NotImplementedError

    async def _target(self, to: str | bytes, target: bytes, *, own: bool) -> bytes:
        account = parse_account(to)
        message = await self._s.get_message(target)
        if message is None or message.conversation_id != "dm:" + account.hex():
            raise NotFoundError("no such message in this conversation")
        if own and message.direction is not Direction.OUT:
            raise ConfigError("only your own messages can be edited or deleted")
        return account

    async def react_dm(
        self, to: str | bytes, target: bytes, emoji: str, *, on: bool = True
    ) -> Message:
        """Add (``on``) or take back a reaction to a message of the conversation."""
        account = await self._target(to, target, own=False)
        if not emoji.strip() or len(emoji.encode()) > 32:
            raise ConfigError("a reaction is 1 to 32 bytes of text, e.g. an emoji")
        body = ReactBody(target=target, emoji=emoji, on=on).to_value()
        verb = "reacted" if on else "took back a reaction"
        content = Content(type="p2pchat/react", body=body, text=f"{verb} {emoji}")
        return await self.send_dm(account, content=content)

    async def edit_dm(self, to: str | bytes, target: bytes, text: str) -> Message:
        """Replace the text of one of our messages."""
        account = await self._target(to, target, own=True)
        if not text.strip():
            raise ConfigError("an edit needs some text (delete the message instead)")
        content = Content(type="p2pchat/edit", body=EditBody(target=target).to_value(), text=text)
        check_outgoing(content)
        return await self.send_dm(account, content=content)

    async def delete_dm(self, to: str | bytes, target: bytes) -> Message:
        """Withdraw one of our messages: receivers stop showing its text and files."""
        account = await self._target(to, target, own=True)
        content = Content(
            type="p2pchat/delete",
            body=DeleteBody(target=target).to_value(),
            text="deleted a message",
        )
        return await self.send_dm(account, content=content)

    async def folded_history(
        self,
        conversation: str | bytes,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int = 50,
    ) -> list[FoldedMessage]:
        """:meth:`history` without the amendments, each message with what they did to
        it (looking through at most :data:`AMEND_SCAN_LIMIT` later messages)."""
        page = await self.history(
            conversation, before_seq=before_seq, after_seq=after_seq, limit=limit
        )
        if not page:
            return []
        later: list[Message] = []
        last = page[-1].seq
        while len(later) < AMEND_SCAN_LIMIT:
            chunk = await self.history(page[0].conversation_id, after_seq=last, limit=_CHUNK)
            later += chunk
            if len(chunk) < _CHUNK:
                break
            last = chunk[-1].seq
        contents = {m.message_id: _content(m) for m in (*page, *later)}
        folded, amendments = fold_amendments(
            FoldInput(m.message_id, m.sender_account, contents[m.message_id])
            for m in (*page, *later)
        )
        return [
            FoldedMessage(m, contents[m.message_id], folded.get(m.message_id))
            for m in page
            if m.message_id not in amendments
        ]

"""Writing to a group (mixed into :class:`p2pchat.groups.service.Groups`): posts,
replies, reactions, moderation, any content event and live comments, all through
:meth:`GroupPosting._author` (signed by the engine, stored, then gossiped), and fetching
a live backlog from members.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import trio

from ..errors import (
    ConfigError,
    LocalProtocolError,
    NetworkError,
    PermissionDeniedError,
    ProtocolError,
    WireError,
)
from ..identity.peerid import peer_id_from_ed25519
from ..net.base import Network
from ..protocol.codec import Struct
from ..protocol.content import Content, MediaRef, check_outgoing
from ..protocol.group_engine import GroupEngine
from ..protocol.group_events import (
    LiveComment,
    MemberBan,
    MemberRemove,
    Post,
    Reaction,
    Reply,
    RoleChange,
    decode_event,
)
from ..protocol.group_log import GroupError, StoredEvent
from ..protocol.group_state import may_change_role, may_moderate
from .effects import CONTENT_KINDS, GroupEffects

__all__ = ["GroupPosting"]

logger = logging.getLogger(__name__)

#: Members asked for a live backlog (``fetch_live_comments``).
_LIVE_FETCH_FANOUT = 2


class GroupPosting(GroupEffects):
    """What a member writes to its groups (see the module docstring)."""

    _network: Network
    _jitter: random.Random

    def _active(self, group_id: bytes) -> GroupEngine:
        raise NotImplementedError

    async def post(
        self,
        group_id: bytes,
        text: str,
        *,
        reply_to: bytes | None = None,
        content: Content | None = None,
    ) -> bytes:
        body_content = content or Content(type="p2pchat/text", body={}, text=text)
        check_outgoing(body_content)  # the same rule as direct messages
        body: Struct = (
            Post(content=body_content)
            if reply_to is None
            else Reply(target=reply_to, content=body_content)
        )
        return await self._author(group_id, body)

    async def react(self, group_id: bytes, target: bytes, emoji: str, *, on: bool = True) -> bytes:
        return await self._author(group_id, Reaction(target=target, emoji=emoji, on=on))

    async def moderate(self, group_id: bytes, action: str, account: bytes, **fields: Any) -> bytes:
        """``remove``, ``ban`` or ``role`` (with ``role=...``) for ``account``."""
        body: Struct
        if action == "remove":
            body = MemberRemove(account=account, reason=fields.get("reason"))
        elif action == "ban":
            body = MemberBan(
                account=account, reason=fields.get("reason"), until=fields.get("until")
            )
        elif action == "role":
            body = RoleChange(account=account, role=fields["role"])
        else:
            raise ConfigError(f"unknown moderation action {action!r}")
        state = self.engine(group_id).state
        mine, theirs = state.role_of(self._account), state.role_of(account)
        if isinstance(body, RoleChange):
            allowed = may_change_role(self._account, mine, account, theirs, body.role)
        else:
            allowed = may_moderate(mine, theirs) and (
                isinstance(body, MemberBan) or theirs is not None
            )
        if not allowed:
            # Refused before signing: every member would ignore the event anyway.
            raise PermissionDeniedError(
                f"as {mine or 'a non-member'} you cannot {action} "
                f"{'a non-member' if theirs is None else 'a ' + theirs} in this group"
            )
        return await self._author(group_id, body)

    async def author_content(self, group_id: bytes, body: Struct) -> bytes:
        """Any content event (edit, delete, share, poll, vote, buy, buy.join, ...)."""
        return await self._author(group_id, body)

    async def live_comment(
        self, group_id: bytes, media: MediaRef, offset_ms: int, text: str
    ) -> bytes:
        engine = self._active(group_id)
        body = LiveComment(media=media, offset=offset_ms, text=text)
        try:
            data = engine.author_live(body, device=self._device, now=self._clock())
        except LocalProtocolError:
            raise
        self.transport.queue(group_id, data)
        return decode_event(data).event_id

    async def fetch_live_comments(
        self, group_id: bytes, media_hash: bytes, start_ms: int, end_ms: int
    ) -> int:
        """Ask up to :data:`_LIVE_FETCH_FANOUT` connected members for the live comments
        on ``media_hash`` with ``start_ms <= offset < end_ms`` that they still hold;
        return how many were new to us (each is also announced as a live comment).

        Two members, not one: a member that joined shortly before us, or was offline for
        a while, lacks part of the window; duplicates cost a dictionary lookup each."""
        engine = self._active(group_id)
        if engine.descriptor.kind != "live":
            raise ConfigError("live comments exist only in live groups")
        if len(media_hash) != 32 or not 0 <= start_ms < end_ms:
            raise ConfigError("expected a 32-byte media hash and 0 <= start < end")
        me = self._network.peer_id
        connected = set(self._network.connected_peers())
        members = sorted(
            {peer_id_from_ed25519(d) for d in engine.member_devices()} & connected - {me}
        )
        chosen = self._jitter.sample(members, min(_LIVE_FETCH_FANOUT, len(members)))
        screen = self.transport.live_screen(group_id, media_hash, start_ms, end_ms)
        for peer_id in chosen:
            try:
                await self.transport.fetch_live(
                    group_id, peer_id, media_hash, start_ms, end_ms, screen=screen
                )
            except (NetworkError, ProtocolError, GroupError, trio.TooSlowError) as exc:
                logger.info("fetching live comments from %s failed: %s", peer_id, exc)
        return screen.added  # also what a member that failed mid-fetch brought

    async def _author(self, group_id: bytes, body: Struct) -> bytes:
        engine = self._active(group_id)
        kind: str = body.KIND  # type: ignore[attr-defined]
        async with self._lock:
            now = self._clock()
            if engine.descriptor.kind == "private" and kind in CONTENT_KINDS:
                data = await self._author_sealed(group_id, engine, body, now)
            else:
                try:
                    data = engine.author(body, device=self._device, now=now)
                except (GroupError, WireError) as exc:
                    raise PermissionDeniedError(f"the group refuses that: {exc}") from None
            held = engine.log.get(decode_event(data).event_id)
            assert held is not None
            stored = StoredEvent(held.event, data)  # as held: its bytes stay till stored
            await self._store_events(group_id, (stored,))
            for effect in engine.take_author_effects():  # a sender key others now need
                await self._run_effect(group_id, effect)
        self.transport.queue(group_id, data)
        self._announce(group_id, stored)
        self._announce_own_removal(group_id, body)
        return stored.event_id

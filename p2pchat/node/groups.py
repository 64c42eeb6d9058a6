"""The group half of the embedding API (mixed into :class:`p2pchat.node.Node`).

Every method delegates to :class:`p2pchat.groups.service.Groups`; group ids, event ids and
account keys are ``bytes``. Rules and semantics: ``protocol-spec/groups.md``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from ..config import DAY_MS
from ..errors import ConfigError, NotFoundError
from ..groups.service import Groups
from ..protocol.content import Content, MediaRef, Price
from ..protocol.group_content import GroupView
from ..protocol.group_content import Message as GroupViewMessage
from ..protocol.group_events import (
    Delete,
    Edit,
    GroupBuy,
    GroupBuyJoin,
    GroupEvent,
    Poll,
    ShareCard,
    Vote,
)
from ..protocol.group_live import LiveEntry
from ..protocol.group_state import Membership
from ..storage.base import Store
from ..storage.records import GroupInfo

__all__ = ["GroupsApi"]

PathLike = str | os.PathLike[str]


class GroupsApi:
    """Create, find, join and use interest groups (public, private, live)."""

    _groups: Groups
    _clock: Callable[[], int]

    def _check(self) -> None:
        raise NotImplementedError

    @property
    def _s(self) -> Store:
        raise NotImplementedError

    async def _attach(self, files: Sequence[PathLike | MediaRef]) -> list[MediaRef]:
        raise NotImplementedError

    def _with_attachments(self, text: str, refs: list[MediaRef]) -> Content:
        raise NotImplementedError

    @property
    def _g(self) -> Groups:
        self._check()
        return self._groups

    async def create_group(
        self,
        name: str,
        *,
        kind: str = "public",
        tags: tuple[str, ...] = (),
        about: str | None = None,
        join: str | None = None,
        slow_seconds: int = 0,
    ) -> bytes:
        """Create a ``public``, ``private`` (E2EE) or ``live`` group; returns its id.

        ``join`` is ``open`` (default for public and live), ``invite`` (default for
        private) or ``approval``; ``tags`` make a public group findable by
        :meth:`search_groups`.
        """
        return await self._g.create(
            name, kind=kind, tags=tags, about=about, join=join, slow_seconds=slow_seconds
        )

    async def invite(
        self,
        group_id: bytes,
        *,
        role: str = "member",
        expires_in_ms: int = 7 * DAY_MS,
        uses: int = 1,
        account: bytes | None = None,
    ) -> str:
        """An invite link (``p2pchat-invite:...``) for ``uses`` joins until it expires."""
        return await self._g.invite(
            group_id, role=role, expires_in_ms=expires_in_ms, uses=uses, account=account
        )

    async def join_group(self, invite_or_group_id: str) -> bytes:
        """Join with an invite link, or by id (from :meth:`search_groups`) if it is open."""
        return await self._g.join(invite_or_group_id)

    async def leave_group(self, group_id: bytes) -> None:
        await self._g.leave(group_id)

    async def post(
        self,
        group_id: bytes,
        text: str = "",
        *,
        reply_to: bytes | None = None,
        content: Content | None = None,
        attachments: Sequence[PathLike | MediaRef] = (),
    ) -> bytes:
        """Post (or reply) in a group; returns the event id. ``attachments``: files sealed
        into our blob store and named in the post (members fetch them from holders)."""
        if attachments:
            if content is not None:
                raise ConfigError("give either content or attachments, not both")
            content = self._with_attachments(text, await self._attach(attachments))
        return await self._g.post(group_id, text, reply_to=reply_to, content=content)

    async def react(self, group_id: bytes, target: bytes, emoji: str, *, on: bool = True) -> bytes:
        return await self._g.react(group_id, target, emoji, on=on)

    async def edit(self, group_id: bytes, target: bytes, text: str) -> bytes:
        content = Content(type="p2pchat/text", body={}, text=text)
        return await self._g.author_content(group_id, Edit(target=target, content=content))

    async def delete(self, group_id: bytes, target: bytes, *, reason: str | None = None) -> bytes:
        return await self._g.author_content(group_id, Delete(target=target, reason=reason))

    async def create_poll(
        self,
        group_id: bytes,
        question: str,
        options: tuple[str, ...],
        *,
        deadline: int,
        multi: bool = False,
    ) -> bytes:
        body = Poll(question=question, options=options, multi=multi, deadline=deadline)
        return await self._g.author_content(group_id, body)

    async def vote(self, group_id: bytes, poll: bytes, choices: tuple[int, ...]) -> bytes:
        """Vote for option indexes (from 0) of a poll; an empty tuple takes the vote back.

        A vote every member would ignore (not a poll, an option out of range, several
        options on a single-choice poll, a closed poll) is refused here, before signing.
        """
        tally = self.group_tallies(group_id).polls.get(poll)
        if tally is None:
            raise NotFoundError("that message is not a poll in this group")
        count = len(tally.poll.options)
        wrong = [c for c in choices if not 0 <= c < count]
        if wrong:
            raise ConfigError(
                f"this poll has options 1 to {count}; there is no option {wrong[0] + 1}"
            )
        if len(set(choices)) != len(choices):
            raise ConfigError("an option is given twice")
        if not tally.poll.multi and len(choices) > 1:
            raise ConfigError("this poll takes one choice: vote for one option")
        if self._clock() > tally.poll.deadline:
            raise ConfigError("this poll is closed (its deadline has passed)")
        return await self._g.author_content(group_id, Vote(poll=poll, choices=choices))

    async def share(
        self,
        group_id: bytes,
        title: str,
        url: str,
        *,
        price: Price | None = None,
        note: str | None = None,
        image: PathLike | MediaRef | None = None,
    ) -> bytes:
        """A share card (e.g. a product link with its price, for shopping groups);
        ``image``: a picture file (sealed, with an inline thumbnail when Pillow is
        installed) shown on the card."""
        img = (await self._attach([image]))[0] if image is not None else None
        body = ShareCard(title=title, url=url, price=price, note=note, image=img)
        return await self._g.author_content(group_id, body)

    async def group_buy(
        self,
        group_id: bytes,
        title: str,
        options: tuple[str, ...],
        *,
        quota: int,
        deadline: int,
        price: Price | None = None,
        url: str | None = None,
    ) -> bytes:
        body = GroupBuy(
            title=title, options=options, quota=quota, deadline=deadline, price=price, url=url
        )
        return await self._g.author_content(group_id, body)

    async def join_buy(self, group_id: bytes, buy: bytes, option: int, quantity: int) -> bytes:
        body = GroupBuyJoin(buy=buy, option=option, quantity=quantity)
        return await self._g.author_content(group_id, body)

    async def live_comment(
        self, group_id: bytes, media: MediaRef, offset_ms: int, text: str
    ) -> bytes:
        """A watch-together comment anchored at ``offset_ms`` of ``media`` (live groups)."""
        return await self._g.live_comment(group_id, media, offset_ms, text)

    def live_comments(
        self, group_id: bytes, media_hash: bytes, start_ms: int, end_ms: int
    ) -> list[LiveEntry]:
        """Comments with ``start_ms <= offset < end_ms`` that this node holds, in timeline
        order. Only comments seen live are held: a member that joins late (or was
        offline) calls :meth:`fetch_live_comments` for the range it plays first."""
        return self._g.engine(group_id).live_comments(
            media_hash, start_ms, end_ms, now=self._clock()
        )

    async def fetch_live_comments(
        self, group_id: bytes, media_hash: bytes, start_ms: int, end_ms: int
    ) -> int:
        """Fetch from up to 2 connected members the live comments on ``media_hash`` with
        ``start_ms <= offset < end_ms`` still in their window; returns how many were new
        (each is verified as if gossiped, and announced as a ``GroupLiveComment``)."""
        return await self._g.fetch_live_comments(group_id, media_hash, start_ms, end_ms)

    async def remove(self, group_id: bytes, account: bytes, *, reason: str | None = None) -> bytes:
        return await self._g.moderate(group_id, "remove", account, reason=reason)

    async def ban(
        self,
        group_id: bytes,
        account: bytes,
        *,
        reason: str | None = None,
        until: int | None = None,
    ) -> bytes:
        return await self._g.moderate(group_id, "ban", account, reason=reason, until=until)

    async def set_role(self, group_id: bytes, account: bytes, role: str) -> bytes:
        return await self._g.moderate(group_id, "role", account, role=role)

    async def search_groups(self, tag: str) -> list[dict[str, Any]]:
        return await self._g.search(tag)

    async def sync_group(self, group_id: bytes) -> int:
        """Anti-entropy with the connected members now; returns events received."""
        return await self._g.sync(group_id)

    async def groups(self) -> list[GroupInfo]:
        return await self._s.list_groups()

    def group_state(self, group_id: bytes) -> Membership:
        """Membership, roles, bans, epoch and the descriptor, as this node sees them."""
        return self._g.engine(group_id).state

    def group_history(
        self, group_id: bytes, *, limit: int = 50, before: bytes | None = None
    ) -> list[GroupViewMessage]:
        """Visible messages in the deterministic group order, oldest first (the
        ``limit`` newest before ``before``, an event id, if given)."""
        # One page, built alone: the whole view (every message of the group) never is.
        return self._g.engine(group_id).history(limit, before)

    def group_message(self, group_id: bytes, event_id: bytes) -> GroupViewMessage | None:
        """One visible message, current (edits, reactions, deletion), or ``None``."""
        return self._g.engine(group_id).message(event_id)

    def group_notices(self, group_id: bytes) -> list[tuple[int, GroupEvent]]:
        """Removals and bans, each with its position in the group order (what members
        are shown next to the messages)."""
        return [(position, s.event) for position, s in self._g.engine(group_id).notices()]

    def group_position(self, group_id: bytes, event_id: bytes) -> int | None:
        """An accepted event's position in the group order (``None``: not held)."""
        return self._g.engine(group_id).position(event_id)

    def group_positions(self, group_id: bytes) -> dict[bytes, int]:
        """Every accepted event's position in the group order (O(history): for one or a
        few, :meth:`group_position`)."""
        ordered = self._g.engine(group_id).ordered_events()
        return {stored.event_id: position for position, stored in enumerate(ordered)}

    def group_history_digest(self, group_id: bytes) -> tuple[bytes, int]:
        """A digest of the ids of every effective event in the group's total order (equal on
        two members exactly when they show the same history), and how many events we hold."""
        engine = self._g.engine(group_id)
        return engine.history_hash(), len(engine.log)

    def group_view(self, group_id: bytes) -> GroupView:
        """The whole materialised view: messages, poll tallies, group-buy states (every
        message of the group: page them with :meth:`group_history`, and take the tallies
        alone from :meth:`group_tallies`)."""
        return self._g.engine(group_id).view

    def group_tallies(self, group_id: bytes) -> GroupView:
        """Poll tallies and group-buy states; ``messages`` is empty."""
        return self._g.engine(group_id).tallies()

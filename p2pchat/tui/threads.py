"""A conversation as the conversation screen sees it: a DM or a group, over the RPC.

Both kinds answer the same questions (latest page, the page before, send, reply,
react…), so one screen shows both. Everything goes through :class:`NodeLink`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .link import Event, NodeLink
from .model import ChatLine, dm_line, group_line

__all__ = ["DmThread", "GroupThread", "Thread", "PAGE"]

#: Messages per page of history.
PAGE = 50


class Thread:
    """Base: what differs between a DM and a group is in the two subclasses."""

    key: str
    target: str
    title: str
    is_group = False
    kind = "dm"

    def __init__(self, link: NodeLink, *, key: str, target: str, title: str) -> None:
        self.link = link
        self.key = key
        self.target = target
        self.title = title

    async def latest(self) -> list[ChatLine]:
        raise NotImplementedError

    async def before(self, first: ChatLine) -> list[ChatLine]:
        raise NotImplementedError

    async def send(
        self, text: str, reply_to: ChatLine | None, files: list[str] | None = None
    ) -> None:
        """Send ``text`` (with the ids of ``files`` added with files.add attached)."""
        raise NotImplementedError

    async def mark_read(self) -> None:
        """Nothing to do by default (group read markers are the app's own)."""

    def concerns(self, event: Event) -> bool:
        raise NotImplementedError

    async def react(self, target: ChatLine, emoji: str) -> None:
        raise NotImplementedError

    async def edit(self, target: ChatLine, text: str) -> None:
        raise NotImplementedError

    async def delete(self, target: ChatLine) -> None:
        raise NotImplementedError


class DmThread(Thread):
    """``dm:<account>``: pages in time order, cursors by ``seq``; delivery states come as
    ``dm.delivery``; copied history (``device.history_progress`` done) reloads it."""

    async def latest(self) -> list[ChatLine]:
        rows = await self.link.call("dm.history", {"conversation": self.target, "limit": PAGE})
        return [dm_line(m) for m in rows]

    async def before(self, first: ChatLine) -> list[ChatLine]:
        # Not "seq 1 is the oldest": history imported from another device has higher
        # seqs but comes earlier in time (dm.history lists in time order).
        if first.seq is None:
            return []
        params = {"conversation": self.target, "before_seq": first.seq, "limit": PAGE}
        return [dm_line(m) for m in await self.link.call("dm.history", params)]

    async def send(
        self, text: str, reply_to: ChatLine | None, files: list[str] | None = None
    ) -> None:
        params: dict[str, Any] = {"to": self.target.removeprefix("dm:"), "text": text}
        if reply_to is not None:
            params["reply_to"] = reply_to.key
        if files:
            params["files"] = files
        await self.link.call("dm.send", params)

    async def mark_read(self) -> None:
        await self.link.call("dm.mark_read", {"conversation": self.target})

    def _about(self, target: ChatLine) -> dict[str, Any]:
        return {"to": self.target.removeprefix("dm:"), "target": target.key}

    async def react(self, target: ChatLine, emoji: str) -> None:
        await self.link.call("dm.react", {**self._about(target), "emoji": emoji})

    async def edit(self, target: ChatLine, text: str) -> None:
        await self.link.call("dm.edit", {**self._about(target), "text": text})

    async def delete(self, target: ChatLine) -> None:
        await self.link.call("dm.delete", self._about(target))

    def concerns(self, event: Event) -> bool:
        if event.type == "device.history_progress":  # history copied from another device
            return bool(event.data.get("done")) and event.data.get("received", 0) > 0
        return event.data.get("conversation_id") == self.target


class GroupThread(Thread):
    """A group: posts, replies, reactions, edits, polls, share cards and group buys."""

    is_group = True

    def __init__(
        self, link: NodeLink, *, key: str, target: str, title: str, kind: str, me: str
    ) -> None:
        super().__init__(link, key=key, target=target, title=title)
        self.kind = kind
        self.me = me

    async def latest(self) -> list[ChatLine]:
        rows = await self.link.call("groups.history", {"group": self.target, "limit": PAGE})
        return [group_line(m, self.me) for m in rows]

    async def before(self, first: ChatLine) -> list[ChatLine]:
        params = {"group": self.target, "before": first.key, "limit": PAGE}
        return [group_line(m, self.me) for m in await self.link.call("groups.history", params)]

    async def view(self) -> Mapping[str, Any]:
        """Poll tallies and group buys."""
        result: Mapping[str, Any] = await self.link.call("groups.view", {"group": self.target})
        return result

    async def send(
        self, text: str, reply_to: ChatLine | None, files: list[str] | None = None
    ) -> None:
        params: dict[str, Any] = {"group": self.target, "text": text}
        if reply_to is not None:
            params["reply_to"] = reply_to.key
        if files:
            params["files"] = files
        await self.link.call("groups.post", params)

    async def react(self, target: ChatLine, emoji: str) -> None:
        params = {"group": self.target, "target": target.key, "emoji": emoji}
        await self.link.call("groups.react", params)

    async def edit(self, target: ChatLine, text: str) -> None:
        params = {"group": self.target, "target": target.key, "text": text}
        await self.link.call("groups.edit", params)

    async def delete(self, target: ChatLine) -> None:
        await self.link.call("groups.delete", {"group": self.target, "target": target.key})

    async def vote(self, poll: str, choices: list[int]) -> None:
        params = {"group": self.target, "poll": poll, "choices": choices}
        await self.link.call("groups.vote", params)

    def concerns(self, event: Event) -> bool:
        return event.data.get("group_id") == self.target

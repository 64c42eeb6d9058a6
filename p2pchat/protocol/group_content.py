"""Content folding: from content events in total order to the messages a user sees.

Every rule here is a pure function of the ordered, permitted events, so every replica
that holds the same events shows the same thing (``protocol-spec/groups.md`` §6):

* an **edit** applies only to its author's own post or reply; the last one in the order
  wins; a deleted message stays deleted;
* a **delete** by the author, or by a moderator or above (role at the delete's position),
  drops the content and keeps a tombstone;
* a **reaction** is a per (message, emoji, account) switch; the last event wins;
* a **vote** counts if its ``ts`` is at most the poll's deadline; the last counting vote
  of an account replaces its earlier ones (an empty vote retracts);
* a **group-buy join** counts if its ``ts`` is at most the deadline; the last one of an
  account replaces its earlier ones (quantity 0 withdraws);
* a reference to a message that is not *earlier in the order* (unknown, later, or an
  event that is not a message) is void, replies included:
  an honest author references only what it holds, which its ``deps`` cover, so the
  target always sorts first.

``ts`` is the author's clock. Its skew is bounded by the log rules (an event may not be
more than ``MAX_TS_SKEW_MS`` behind its parents, nor ahead of the receiver's clock), so
an author can backdate a late vote only by as much as that bound, and only by ignoring
what it has seen.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .content import Content
from .group_events import (
    Delete,
    Edit,
    GroupBuy,
    GroupBuyJoin,
    Poll,
    Post,
    Reaction,
    Reply,
    ShareCard,
    Vote,
)
from .group_state import rank

__all__ = [
    "EventRef",
    "Message",
    "PollTally",
    "BuyState",
    "GroupView",
    "ContentFold",
    "POST_KINDS",
    "CONTENT_KINDS",
]

#: Kinds that create a message (subject to the post role and slow mode).
POST_KINDS = frozenset({"post", "reply", "share", "poll", "buy"})
#: Every content kind (clear in public groups, sealed in private ones).
CONTENT_KINDS = POST_KINDS | {"react", "edit", "delete", "vote", "buy.join"}


@dataclass(frozen=True, slots=True)
class EventRef:
    """Where an event sits: its id, author and the author's timestamp."""

    event_id: bytes
    account: bytes
    device: bytes
    ts: int


@dataclass(frozen=True, slots=True)
class Message:
    """One visible message, with every later event already folded in."""

    ref: EventRef
    kind: str
    content: Content | None
    reply_to: bytes | None = None
    share: ShareCard | None = None
    edited: bool = False
    deleted: bool = False
    sealed: bool = False  # a private-group message not (yet) decrypted
    reactions: MappingProxyType[str, frozenset[bytes]] = field(
        default_factory=lambda: MappingProxyType({})
    )

    @property
    def text(self) -> str:
        """What a node shows: the content's text (the fallback for unknown types)."""
        if self.deleted or self.sealed:
            return ""
        if self.content is not None:
            return self.content.text
        if self.share is not None:
            return self.share.title
        return ""


@dataclass(frozen=True, slots=True)
class PollTally:
    poll_id: bytes
    poll: Poll
    counts: tuple[int, ...]
    voters: int


@dataclass(frozen=True, slots=True)
class BuyState:
    buy_id: bytes
    buy: GroupBuy
    units: tuple[int, ...]  # per option
    participants: MappingProxyType[bytes, tuple[int, int]]  # account -> (option, quantity)

    @property
    def total(self) -> int:
        return sum(self.units)

    @property
    def reached(self) -> bool:
        return self.total >= self.buy.quota

    def status(self, now: int) -> str:
        """``"reached"``, ``"open"`` (deadline ahead) or ``"failed"``."""
        if self.reached:
            return "reached"
        return "open" if now <= self.buy.deadline else "failed"


@dataclass(frozen=True, slots=True)
class GroupView:
    """The materialised view: visible messages in display order, tallies by event id."""

    messages: tuple[Message, ...]
    polls: MappingProxyType[bytes, PollTally]
    buys: MappingProxyType[bytes, BuyState]
    #: ``message()`` is called once per accepted event (the node announces each one):
    #: a scan made a 10,000-event catch-up quadratic (5 of its 14 s).
    _by_id: dict[bytes, Message] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {m.ref.event_id: m for m in self.messages})

    def message(self, event_id: bytes) -> Message | None:
        return self._by_id.get(event_id)


@dataclass(slots=True)
class _Msg:
    ref: EventRef
    kind: str
    content: Content | None
    reply_to: bytes | None = None
    share: ShareCard | None = None
    edited: bool = False
    deleted: bool = False
    sealed: bool = False
    #: ``None`` until the first reaction: most messages never get one, and an empty
    #: dict per message was ~64 bytes of every post held.
    reactions: dict[str, set[bytes]] | None = None


@dataclass(slots=True)
class ContentFold:
    """Mutable content state of one replay; :meth:`view` freezes it."""

    slow_ms: int
    post_role: str
    messages: dict[bytes, _Msg] = field(default_factory=dict)
    polls: dict[bytes, tuple[Poll, dict[bytes, tuple[int, ...]]]] = field(default_factory=dict)
    buys: dict[bytes, tuple[GroupBuy, dict[bytes, tuple[int, int]]]] = field(default_factory=dict)
    last_post: dict[bytes, int] = field(default_factory=dict)
    #: Messages this fold may mutate in place; the others may be shared with a clone and
    #: are copied on first write (:meth:`_writable`).
    owned: set[bytes] = field(default_factory=set, repr=False, compare=False)

    def clone(self) -> ContentFold:
        """An independent copy (for fold checkpoints).

        Copy-on-write: both folds share the messages and give up owning them, so a clone
        costs a dict copy, not a copy of every message (a checkpoint every 256 events
        deep-copied the whole history: 3.9 s of a 10,000-event catch-up).
        """
        self.owned = set()
        return ContentFold(
            slow_ms=self.slow_ms,
            post_role=self.post_role,
            messages=dict(self.messages),
            polls={k: (poll, dict(votes)) for k, (poll, votes) in self.polls.items()},
            buys={k: (buy, dict(joins)) for k, (buy, joins) in self.buys.items()},
            last_post=dict(self.last_post),
        )

    def placeholder(self, ref: EventRef, role: str) -> bool:
        """A sealed event not yet decrypted: shown as such, counted for slow mode."""
        if not self._may_post(ref, role):
            return False
        self.messages[ref.event_id] = _Msg(ref, "sealed", None, sealed=True)
        self.owned.add(ref.event_id)
        return True

    def _writable(self, event_id: bytes) -> _Msg | None:
        """The message ``event_id``, private to this fold (copied if it may be shared)."""
        message = self.messages.get(event_id)
        if message is None or event_id in self.owned:
            return message
        reactions = message.reactions
        message = dataclasses.replace(
            message,
            reactions=None if reactions is None else {e: set(a) for e, a in reactions.items()},
        )
        self.messages[event_id] = message
        self.owned.add(event_id)
        return message

    def _may_post(self, ref: EventRef, role: str) -> bool:
        if rank(role) < rank(self.post_role):
            return False
        if self.slow_ms and rank(role) < rank("moderator"):
            last = self.last_post.get(ref.account)
            if last is not None and ref.ts < last + self.slow_ms:
                return False
        self.last_post[ref.account] = ref.ts
        return True

    def apply(self, ref: EventRef, kind: str, body: Any, role: str) -> bool:
        """Fold one content event of a member with ``role``; return whether it had effect."""
        if kind in POST_KINDS:
            if isinstance(body, Reply) and body.target not in self.messages:
                return False  # a reply names a message that sorts earlier (deleted or not)
            if not self._may_post(ref, role):
                return False
            if isinstance(body, Post):
                self.messages[ref.event_id] = _Msg(ref, kind, body.content)
            elif isinstance(body, Reply):
                self.messages[ref.event_id] = _Msg(ref, kind, body.content, reply_to=body.target)
            elif isinstance(body, ShareCard):
                self.messages[ref.event_id] = _Msg(ref, kind, None, share=body)
            elif isinstance(body, Poll):
                self.messages[ref.event_id] = _Msg(ref, kind, None)
                self.polls[ref.event_id] = (body, {})
            elif isinstance(body, GroupBuy):
                self.messages[ref.event_id] = _Msg(ref, kind, None)
                self.buys[ref.event_id] = (body, {})
            self.owned.add(ref.event_id)
            return True
        if isinstance(body, Edit):
            return self._edit(ref, body)
        if isinstance(body, Delete):
            target = self.messages.get(body.target)
            if target is None or target.deleted:
                return False
            if target.ref.account != ref.account and rank(role) < rank("moderator"):
                return False
            target = self._writable(body.target)
            assert target is not None
            target.deleted, target.content, target.share = True, None, None
            target.reactions = None
            return True
        if isinstance(body, Reaction):
            target = self.messages.get(body.target)
            if target is None or target.deleted:
                return False
            target = self._writable(body.target)
            assert target is not None
            if target.reactions is None:
                target.reactions = {}
            accounts = target.reactions.setdefault(body.emoji, set())
            (accounts.add if body.on else accounts.discard)(ref.account)
            if not accounts:
                del target.reactions[body.emoji]
            return True
        if isinstance(body, Vote):
            return self._vote(ref, body)
        if isinstance(body, GroupBuyJoin):
            return self._buy_join(ref, body)
        return False

    def _edit(self, ref: EventRef, body: Edit) -> bool:
        target = self.messages.get(body.target)
        if target is None or target.deleted or target.kind not in ("post", "reply"):
            return False
        if target.ref.account != ref.account:
            return False
        target = self._writable(body.target)
        assert target is not None
        target.content, target.edited = body.content, True
        return True

    def _vote(self, ref: EventRef, body: Vote) -> bool:
        entry = self.polls.get(body.poll)
        if entry is None or self.messages[body.poll].deleted:
            return False
        poll, votes = entry
        choices = body.choices
        if ref.ts > poll.deadline or len(set(choices)) != len(choices):
            return False
        if any(c >= len(poll.options) for c in choices) or (len(choices) > 1 and not poll.multi):
            return False
        if choices:
            votes[ref.account] = tuple(sorted(choices))
        else:
            votes.pop(ref.account, None)
        return True

    def _buy_join(self, ref: EventRef, body: GroupBuyJoin) -> bool:
        entry = self.buys.get(body.buy)
        if entry is None or self.messages[body.buy].deleted:
            return False
        buy, joins = entry
        if ref.ts > buy.deadline or body.option >= len(buy.options):
            return False
        if body.quantity:
            joins[ref.account] = (body.option, body.quantity)
        else:
            joins.pop(ref.account, None)
        return True

    def message(self, event_id: bytes) -> Message | None:
        """One message as the view would show it, without building the whole view."""
        m = self.messages.get(event_id)
        return None if m is None else _shown(m)

    def page(self, limit: int, before: bytes | None = None) -> list[Message]:
        """The ``limit`` newest messages (before the message ``before``, if it is one),
        oldest first: what one page of history shows, in O(page) memory (the whole view
        is never built for it). Walks back from the newest message."""
        out: list[Message] = []
        if limit <= 0:
            return out
        skipping = before is not None and before in self.messages
        for event_id in reversed(self.messages):
            if skipping:
                skipping = event_id != before
                continue
            out.append(_shown(self.messages[event_id]))
            if len(out) == limit:
                break
        out.reverse()
        return out

    def view(self, *, messages: bool = True) -> GroupView:
        """The materialised view; ``messages=False`` leaves the messages out (tallies
        only: building every message costs O(history))."""
        shown = tuple(_shown(m) for m in self.messages.values()) if messages else ()
        polls = {}
        for poll_id, (poll, votes) in self.polls.items():
            counts = [0] * len(poll.options)
            for choices in votes.values():
                for c in choices:
                    counts[c] += 1
            polls[poll_id] = PollTally(poll_id, poll, tuple(counts), len(votes))
        buys = {}
        for buy_id, (buy, joins) in self.buys.items():
            units = [0] * len(buy.options)
            for option, quantity in joins.values():
                units[option] += quantity
            buys[buy_id] = BuyState(buy_id, buy, tuple(units), MappingProxyType(dict(joins)))
        return GroupView(shown, MappingProxyType(polls), MappingProxyType(buys))


def _shown(m: _Msg) -> Message:
    return Message(
        ref=m.ref,
        kind=m.kind,
        content=m.content,
        reply_to=m.reply_to,
        share=m.share,
        edited=m.edited,
        deleted=m.deleted,
        sealed=m.sealed,
        reactions=MappingProxyType(
            {emoji: frozenset(accts) for emoji, accts in sorted((m.reactions or {}).items())}
        ),
    )

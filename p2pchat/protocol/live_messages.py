"""Live backlog payloads (envelope kinds on ``/p2pchat/live/1.0.0``) and their pure rules.

A late joiner of a watch-together group asks a member for the live comments of the
part of the timeline it plays: ``live.want`` names the group, the media (by hash) and
an offset range; the member answers with one ``live.batch`` of the comments it still
holds in its window (``protocol-spec/groups.md`` §9), as their exact signed bytes, so
the joiner verifies each one as if it had come by gossip. ``more`` says the member
stopped at a cap: the joiner may ask again from the last offset it got.

Live comments are rate-limited per author on the receiver's clock, which a backlog
cannot pass (it arrives all at once by design). :class:`BacklogScreen` replaces that
limit by the same token bucket replayed on the comments' *own* timestamps, so a member
cannot hand us more of one author's comments than the author could have posted live,
and it drops what was not asked for (another group, media or range, or anything but a
``live.comment``) before any signature is checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from p2pchat.errors import WireError

from .codec import Bool, Bytes, ListOf, Struct, UInt, wire
from .framing import MAX_FRAME
from .group_events import MAX_EVENT, GroupEvent, LiveComment, decode_event
from .limits import TokenBucket

__all__ = [
    "MAX_LIVE_BATCH",
    "LIVE_BATCH_BUDGET",
    "LiveWant",
    "LiveBatch",
    "LIVE_KINDS",
    "pack_batch",
    "BacklogScreen",
    "Screened",
]

#: At most this many comments in one ``live.batch`` (and asked for by one ``live.want``).
MAX_LIVE_BATCH = 512
#: Bytes of event data in one batch: the envelope around it must stay within MAX_FRAME.
LIVE_BATCH_BUDGET = MAX_FRAME - 4096

_KEY = Bytes(32)


@dataclass(frozen=True, kw_only=True)
class LiveWant(Struct):
    """Ask for the live comments on one media with ``from <= offset < to``."""

    KIND: ClassVar[str] = "live.want"
    group: bytes = wire("g", _KEY, "group id (a live group)")
    media: bytes = wire("media", _KEY, "media hash (MediaRef.h of the comments)")
    start: int = wire("from", UInt(), "first timeline offset wanted, ms (inclusive)")
    end: int = wire("to", UInt(), "end of the range, ms (exclusive)")
    max: int = wire("max", UInt(1, MAX_LIVE_BATCH), "at most this many comments")

    def __post_init__(self) -> None:
        if self.start >= self.end:
            raise ValueError("from >= to")


@dataclass(frozen=True, kw_only=True)
class LiveBatch(Struct):
    """The answer to one ``live.want``: comments in timeline order, exact bytes."""

    KIND: ClassVar[str] = "live.batch"
    group: bytes = wire("g", _KEY, "group id")
    events: tuple[bytes, ...] = wire(
        "evs",
        ListOf(Bytes(low=1, high=MAX_EVENT), 0, MAX_LIVE_BATCH),
        "encoded live.comment events, by offset",
    )
    more: bool = wire("more", Bool(), "true if the sender stopped at a cap (ask again)")


LIVE_KINDS: tuple[type[Struct], ...] = (LiveWant, LiveBatch)


def pack_batch(group: bytes, events: Sequence[bytes], *, limit: int) -> LiveBatch:
    """The batch answering a want of ``limit`` comments from ``events`` (the holder's
    matches in timeline order, ideally one more than ``limit`` so that ``more`` is
    exact): capped at ``limit``, :data:`MAX_LIVE_BATCH` and :data:`LIVE_BATCH_BUDGET`."""
    taken: list[bytes] = []
    size = 0
    for data in events[: min(limit, MAX_LIVE_BATCH)]:
        if size + len(data) + 8 > LIVE_BATCH_BUDGET:
            break
        taken.append(data)
        size += len(data) + 8  # CBOR header of each byte string, generously
    return LiveBatch(group=group, events=tuple(taken), more=len(taken) < len(events))


@dataclass(frozen=True, slots=True)
class Screened:
    """What :meth:`BacklogScreen.screen` made of one batch."""

    #: Comments worth verifying, exact bytes, in the order received.
    events: tuple[bytes, ...]
    #: Entries dropped unverified (undecodable, not asked for, or beyond the pace).
    refused: int
    #: The largest offset among ``events`` (None if empty): where to ask again from.
    last_offset: int | None


@dataclass(slots=True)
class BacklogScreen:
    """Cheap checks of the ``live.batch`` answers to one fetch, before any signature.

    ``rate_per_s`` and ``burst`` are the live rate limit of the group
    (:class:`~p2pchat.protocol.group_live.LiveConfig`); one bucket per author device
    lives for the whole fetch (all its batches and members), replayed on the comments'
    timestamps in increasing order.
    """

    want: LiveWant
    rate_per_s: float
    burst: float
    #: Comments new to us that this fetch added (kept here so that a member failing
    #: mid-fetch does not lose the count of what its earlier pages brought).
    added: int = 0
    _buckets: dict[bytes, TokenBucket] = field(default_factory=dict)
    _seen: set[bytes] = field(default_factory=set)

    def screen(self, batch: LiveBatch) -> Screened:
        if batch.group != self.want.group:
            raise WireError("wrong-group", "live.batch of another group")
        wanted: list[tuple[GroupEvent, bytes]] = []
        refused = 0
        for data in batch.events:
            event = self._decode(data)
            if event is None or event.event_id in self._seen:
                refused += event is None
                continue
            self._seen.add(event.event_id)
            wanted.append((event, data))
        wanted.sort(key=lambda pair: (pair[0].ts, pair[0].event_id))
        kept: list[bytes] = []
        last: int | None = None
        for event, data in wanted:
            if not self._paced(event):
                refused += 1
                continue
            kept.append(data)
            assert isinstance(event.parsed, LiveComment)
            last = event.parsed.offset if last is None else max(last, event.parsed.offset)
        return Screened(events=tuple(kept), refused=refused, last_offset=last)

    def next_want(self, screened: Screened, *, more: bool) -> LiveWant | None:
        """The want for the next page, or None when the range is done. The next page
        starts at the last offset received (comments there are deduplicated); a page
        whose every comment sat at ``from`` moves on by one ms rather than loop."""
        if not more or screened.last_offset is None:
            return None
        start = max(screened.last_offset, self.want.start + 1)
        if start >= self.want.end:
            return None
        self.want = LiveWant(
            group=self.want.group,
            media=self.want.media,
            start=start,
            end=self.want.end,
            max=self.want.max,
        )
        return self.want

    def _decode(self, data: bytes) -> GroupEvent | None:
        try:
            event = decode_event(data)
        except WireError:
            return None
        body = event.parsed
        if (
            not isinstance(body, LiveComment)  # only live.comment events parse to this
            or event.group_id != self.want.group
            or body.media.hash != self.want.media
            or not self.want.start <= body.offset < self.want.end
        ):
            return None
        return event

    def _paced(self, event: GroupEvent) -> bool:
        bucket = self._buckets.get(event.author_device)
        if bucket is None:
            bucket = TokenBucket.full(rate=self.rate_per_s, burst=self.burst, now=event.ts)
            self._buckets[event.author_device] = bucket
        return bucket.take(event.ts)

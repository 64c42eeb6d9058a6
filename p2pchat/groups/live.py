"""``/p2pchat/live/1.0.0``: a late joiner fetches the live comments of the range it plays.

Live comments are gossiped only and kept by each member for a window
(:mod:`p2pchat.protocol.group_live`); a member that joins a watch party late has none
of them. It opens this stream to a member and sends signed ``live.want`` frames, each
answered by one ``live.batch`` (:mod:`p2pchat.protocol.live_messages`); it closes its
side when done.

Server: answers only for a *live* group it is in, and only a peer whose device is a
member; the peer is charged before anything is verified (the stream, then each want
by its size), as on the sync streams. A refused peer's stream is reset: it gets nothing.

Client: screens each batch (:class:`~p2pchat.protocol.live_messages.BacklogScreen`:
only ``live.comment`` events of the asked group, media and range, paced per author on
their own timestamps), then gives every remaining event to the engine's full validation
(:meth:`~p2pchat.protocol.group_engine.GroupEngine.receive_live_backlog`). A bad event
is dropped alone. What is accepted goes through the node's usual results path: live
comments are indexed and announced, never stored.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio
from nacl.signing import SigningKey

from ..errors import ProtocolError, RateLimitedError, WireError
from ..identity.peerid import peer_id_from_ed25519
from ..net.base import FramedStream
from ..protocol.envelope import decode_envelope, seal
from ..protocol.group_effects import Effect, ReceiveResult
from ..protocol.group_engine import GroupEngine
from ..protocol.group_live import LiveConfig
from ..protocol.group_log import GroupError
from ..protocol.limits import PeerLimiter
from ..protocol.live_messages import (
    MAX_LIVE_BATCH,
    BacklogScreen,
    LiveBatch,
    LiveWant,
    pack_batch,
)

__all__ = ["LIVE_PROTOCOL", "LiveBacklog"]

logger = logging.getLogger(__name__)

LIVE_PROTOCOL = "/p2pchat/live/1.0.0"
#: A want is small; a batch is bounded by MAX_FRAME (live_messages.LIVE_BATCH_BUDGET).
_MAX_WANT_FRAME = 4096
_MAX_BATCH_FRAME = 1 << 20
#: Pages asked of one member in one fetch (each at most MAX_LIVE_BATCH comments).
MAX_PAGES = 8
#: Tokens a stream costs its opener before anything is read (as a sync stream).
_STREAM_COST = 10
_TIMEOUT_S = 30


class LiveBacklog:
    """Serve and fetch live backlogs (the I/O; the rules are in ``live_messages``)."""

    def __init__(
        self,
        *,
        signing_key: SigningKey,
        clock: Callable[[], int],
        engine_of: Callable[[bytes], GroupEngine | None],
        limiter: PeerLimiter,
        on_result: Callable[[bytes, ReceiveResult], Awaitable[None]],
        live: LiveConfig,
    ) -> None:
        self._signing_key = signing_key
        self._clock = clock
        self._engine_of = engine_of
        self._limiter = limiter
        self._on_result = on_result
        self._live = live
        self.stats: dict[str, int] = {
            "served": 0,
            "refused": 0,
            "fetched": 0,
            "dropped": 0,
        }

    # -- server ---------------------------------------------------------------------------

    async def serve(self, stream: FramedStream) -> None:
        """Answer each ``live.want`` of one stream until the peer closes its side."""
        peer = stream.remote_peer
        try:
            if not self._limiter.allow(peer, self._clock(), cost=_STREAM_COST):
                raise RateLimitedError("live backlog streams beyond the peer's rate")
            with trio.fail_after(_TIMEOUT_S):
                while (frame := await stream.read_frame(_MAX_WANT_FRAME)) is not None:
                    batch = self._answer(peer, frame)
                    await stream.write_frame(
                        seal(batch, signing_key=self._signing_key, now=self._clock())
                    )
                    self.stats["served"] += len(batch.events)
            await stream.close()
        except (ProtocolError, GroupError, trio.TooSlowError) as exc:
            self.stats["refused"] += 1
            logger.info("live backlog for %s refused: %s", peer, exc)
            await stream.reset()

    def _answer(self, peer: str, frame: bytes) -> LiveBatch:
        envelope = decode_envelope(frame, max_size=_MAX_WANT_FRAME)
        want = envelope.open()
        if not isinstance(want, LiveWant):
            raise WireError("unexpected-kind", "a live stream carries live.want")
        engine = self._engine_of(want.group)
        if engine is None or engine.descriptor.kind != "live":
            raise WireError("unknown-group", "not a member of that live group")
        if peer_id_from_ed25519(envelope.sender) != peer or not _is_member(engine, peer):
            raise GroupError("not-member", "live backlogs are for members")
        # One token per 64 comments asked for, on top of the frame: the answer's cost.
        if not self._limiter.allow(peer, self._clock(), cost=1 + want.max // 64):
            raise RateLimitedError("live wants beyond the peer's rate")
        envelope.verify()
        found = engine.live_events(
            want.media, want.start, want.end, now=self._clock(), limit=want.max + 1
        )
        return pack_batch(want.group, found, limit=want.max)

    # -- client ---------------------------------------------------------------------------

    async def fetch(
        self,
        stream: FramedStream,
        want: LiveWant,
        *,
        screen: BacklogScreen | None = None,
    ) -> int:
        """Ask over ``stream`` (opened to a member) for ``want``'s range, page by page;
        return how many comments were new to us. ``screen`` is shared by the members
        asked within one fetch (one pace per author across all of them)."""
        engine = self._engine_of(want.group)
        if engine is None:
            return 0
        screen = screen or self.screen(want)
        screen.want = want
        before = screen.added
        next_want: LiveWant | None = want
        pages = 0
        with trio.fail_after(_TIMEOUT_S):
            while next_want is not None and pages < MAX_PAGES:
                pages += 1
                await stream.write_frame(
                    seal(next_want, signing_key=self._signing_key, now=self._clock())
                )
                frame = await stream.read_frame(_MAX_BATCH_FRAME)
                if frame is None:
                    raise WireError("truncated", "the member ended the stream early")
                envelope = decode_envelope(frame, max_size=_MAX_BATCH_FRAME)
                batch = envelope.open()
                if not isinstance(batch, LiveBatch):
                    raise WireError("unexpected-kind", "a live stream answers with live.batch")
                envelope.verify()
                screened = screen.screen(batch)
                self.stats["dropped"] += screened.refused
                screen.added += await self._apply(engine, want.group, screened.events)
                next_want = screen.next_want(screened, more=batch.more)
        await stream.close()
        return screen.added - before

    def screen(self, want: LiveWant) -> BacklogScreen:
        """A fresh screen for one fetch (possibly from several members)."""
        return BacklogScreen(want=want, rate_per_s=self._live.rate_per_s, burst=self._live.burst)

    async def _apply(self, engine: GroupEngine, group: bytes, events: tuple[bytes, ...]) -> int:
        effects: list[Effect] = []
        now = self._clock()
        for data in events:
            try:
                effects += engine.receive_live_backlog(data, now=now).effects
            except (WireError, GroupError, RateLimitedError) as exc:
                self.stats["dropped"] += 1
                logger.debug("dropped a fetched live comment: %s", exc)
        self.stats["fetched"] += len(effects)
        if effects:
            await self._on_result(group, ReceiveResult(effects=tuple(effects)))
        return len(effects)


def _is_member(engine: GroupEngine, peer: str) -> bool:
    return any(peer_id_from_ed25519(device) == peer for device in engine.member_devices())


def want_for(group: bytes, media: bytes, start: int, end: int) -> LiveWant:
    """The first want of a fetch (the most a member gives per page)."""
    return LiveWant(group=group, media=media, start=start, end=end, max=MAX_LIVE_BATCH)

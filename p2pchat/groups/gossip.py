"""Moving group events: gossip push and anti-entropy sync (the I/O around the engine).

Push: one gossipsub topic per group, ``/p2pchat/group/<hex group id>`` (a hash, never
the group's name). A new local event is published at once after a quiet spell; under
load, events are batched until the next flush (at most 4 a second: fewer, fuller
messages, well under py-libp2p's spam filter) and published as one signed ``sync.batch``
envelope, each event its own run, so a receiver that missed an earlier message buffers
instead of refusing, and syncs with the publisher at once to fill the gap
(``GAP_SYNC_INTERVAL_S``). The topic validator rate-limits the forwarding peer *before*
any signature check (one token per signature a message may cost: its envelope and each
run), then runs the engine's pure validation: an invalid batch is neither applied nor
forwarded. Sync streams pay the same way, per frame. Gossip is best effort (py-libp2p
drops silently under load); delivery is guaranteed by sync.

Live backlog: ``/p2pchat/live/1.0.0`` (:mod:`p2pchat.groups.live`) hands a late joiner of a
watch party the live comments (never synced) of the range it plays.

Pull: ``/p2pchat/sync/1.0.0``, one exchange per stream, driven on both sides by
:class:`~p2pchat.protocol.group_sync.SyncSession`; frames are signed envelopes. Every
node syncs with a few random members periodically and after (re)connecting, so
partitions heal.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Sequence

import trio
from nacl.signing import SigningKey

from ..errors import NetworkError, P2PChatError, ProtocolError, RateLimitedError, WireError
from ..identity.peerid import peer_id_to_key
from ..net.base import FramedStream, Network, Subscription
from ..protocol.codec import Struct
from ..protocol.counters import RATE_LIMITED, ReasonCounter
from ..protocol.envelope import decode_envelope, seal
from ..protocol.group_effects import ReceiveResult
from ..protocol.group_engine import GroupEngine
from ..protocol.group_events import decode_event
from ..protocol.group_live import LiveConfig
from ..protocol.group_log import GroupError
from ..protocol.group_sync import SyncSession
from ..protocol.limits import PeerLimiter
from ..protocol.live_messages import BacklogScreen
from ..protocol.sync_messages import Run, SyncBatch, SyncFrontier
from .live import LIVE_PROTOCOL, LiveBacklog, want_for

__all__ = ["SYNC_PROTOCOL", "GroupTransport", "topic_of"]

logger = logging.getLogger(__name__)

SYNC_PROTOCOL = "/p2pchat/sync/1.0.0"
MAX_SYNC_FRAME = 1 << 20
#: At most one gossip flush per this interval. After a quiet spell an event is published
#: at once (no added latency); under load, what is authored meanwhile is batched into the
#: next flush. A pubsub message costs every member ~10 ms of py-libp2p's CPU whatever it
#: carries (``bench/scale_bench.py``), and py-libp2p silently drops beyond 10 messages/s
#: per (forwarding peer, topic): 4 a second at most keeps a busy group's messages few
#: and full, for at most 0.25 s of added latency.
PUBLISH_INTERVAL_S = 0.25
#: Gossip whose events wait for an ancestor we lack (gossip lost a message) starts a
#: sync with its publisher at once rather than at the next periodic one (~30 s): at most
#: one such sync per group at a time, and one per this interval.
GAP_SYNC_INTERVAL_S = 1.0
_MAX_BATCH_EVENTS = 200
#: The verification budget is this many times the message rate (default 50/s -> 2,000
#: Ed25519 verifies/s, ~16 % of a core, per peer at most).
_VERIFY_FACTOR = 40
#: A sync batch holds at most 256 runs, plus its envelope.
_MAX_VERIFIES_PER_MESSAGE = 257
_SEEN = 4096

#: ``await on_result(group_id, result)``: persist accepted events, run effects.
ResultHandler = Callable[[bytes, ReceiveResult], Awaitable[None]]
#: Reads stored events' bytes by id (a group's, from the node's store).
EventReader = Callable[[bytes, Sequence[bytes]], Awaitable[dict[bytes, bytes]]]


def _device_of(peer_id: str) -> bytes | None:
    try:
        return peer_id_to_key(peer_id)
    except ValueError:
        return None


#: Refusals of a run that prove its sender misbehaved (see ``_proves_misbehaviour``).
_PROOF_REASONS = frozenset({"bad-signature", "bad-cert"})


def _proves_misbehaviour(error: Exception) -> bool:
    """Malformed bytes (``WireError``) or a signature that does not verify: an honest
    node never sends either (it verified what it relays). A missing ancestor, a full
    buffer or a rate limit may be ours, or ordinary churn: never penalised."""
    if isinstance(error, WireError):
        return True
    return isinstance(error, GroupError) and error.reason in _PROOF_REASONS


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def topic_of(group_id: bytes) -> str:
    return f"/p2pchat/group/{group_id.hex()}"


class GroupTransport:
    """Gossip and sync for every group the node is in (no protocol state of its own)."""

    def __init__(
        self,
        *,
        network: Network,
        signing_key: SigningKey,
        clock: Callable[[], int],
        engine_of: Callable[[bytes], GroupEngine | None],
        on_result: ResultHandler,
        read_events: EventReader,
        peer_rate: float,
        peer_burst: int,
    ) -> None:
        self._network = network
        self._read_events = read_events
        self._signing_key = signing_key
        self._clock = clock
        self._engine_of = engine_of
        self._on_result = on_result
        #: Messages and sync frames per peer: the cheap gate, run before any decode. A
        #: peer that keeps exceeding it is graylisted.
        self._limiter = PeerLimiter(rate=peer_rate, burst=peer_burst)
        #: Signature checks a peer may make us do (one per envelope and one per run).
        #: A separate, larger budget that never graylists: an honest relay of a lively
        #: group carries many runs per message and must not collect strikes for it; a
        #: flood is already graylisted by the gate above. Its burst holds a maximal
        #: sync batch.
        self._verifies = PeerLimiter(
            rate=peer_rate * _VERIFY_FACTOR,
            burst=max(peer_burst * 5, _MAX_VERIFIES_PER_MESSAGE),
            strikes=2**62,
        )
        self._burst = max(peer_burst * 5, _MAX_VERIFIES_PER_MESSAGE)
        self._pending: defaultdict[bytes, list[bytes]] = defaultdict(list)
        self._flush_due = trio.Event()
        self._last_flush = -PUBLISH_INTERVAL_S
        self._results_in, self._results_out = trio.open_memory_channel[tuple[bytes, ReceiveResult]](
            1024
        )
        #: Digest of each recent gossip message -> whether it may be forwarded.
        self._seen: OrderedDict[bytes, bool] = OrderedDict()
        self._subscriptions: dict[bytes, Subscription] = {}
        #: Groups with a gap sync running, and when each group may start the next one.
        self._gap_syncing: set[bytes] = set()
        self._gap_next: dict[bytes, float] = {}
        self._nursery: trio.Nursery | None = None
        self.stats: defaultdict[str, int] = defaultdict(int)
        #: Why group messages (gossip and sync) were refused, by reason slug.
        self.rejections = ReasonCounter()
        network.set_stream_handler(SYNC_PROTOCOL, self._serve_sync)
        self.live = LiveBacklog(
            signing_key=signing_key,
            clock=clock,
            engine_of=engine_of,
            limiter=self._limiter,
            on_result=self._handle_step,
            live=LiveConfig(),
        )
        network.set_stream_handler(LIVE_PROTOCOL, self.live.serve)

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flush batches and apply validated gossip until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._flush_loop)
            nursery.start_soon(self._results_loop)
            task_status.started()
            await trio.sleep_forever()

    async def subscribe(self, group_id: bytes) -> None:
        if group_id in self._subscriptions:
            return
        topic = topic_of(group_id)
        self._network.pubsub.set_validator(topic, self._validator(group_id))
        subscription = await self._network.pubsub.subscribe(topic)
        self._subscriptions[group_id] = subscription
        assert self._nursery is not None
        self._nursery.start_soon(self._drain, group_id, subscription)

    async def unsubscribe(self, group_id: bytes) -> None:
        subscription = self._subscriptions.pop(group_id, None)
        self._gap_next.pop(group_id, None)
        if subscription is not None:
            await subscription.aclose()

    # -- push -----------------------------------------------------------------------------

    def queue(self, group_id: bytes, event: bytes) -> None:
        """Publish ``event`` with the next batch of its group."""
        self._pending[group_id].append(event)
        self._flush_due.set()

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_due.wait()
            wait = self._last_flush + PUBLISH_INTERVAL_S - trio.current_time()
            if wait > 0:
                await trio.sleep(wait)  # gather what else is authored meanwhile
            self._last_flush = trio.current_time()
            self._flush_due = trio.Event()
            pending, self._pending = self._pending, defaultdict(list)
            for group_id, events in pending.items():
                for start in range(0, len(events), _MAX_BATCH_EVENTS):
                    await self._publish(group_id, events[start : start + _MAX_BATCH_EVENTS])

    async def _publish(self, group_id: bytes, events: list[bytes]) -> None:
        engine = self._engine_of(group_id)
        if engine is None:
            return
        runs = tuple(Run(device=decode_event(e).author_device, events=(e,)) for e in events)
        data = seal(
            SyncBatch(group=group_id, runs=runs), signing_key=self._signing_key, now=self._clock()
        )
        self._remember(data)
        try:
            await self._network.pubsub.publish(topic_of(group_id), data)
            self.stats["published_batches"] += 1
            self.stats["published_events"] += len(events)
        except NetworkError as exc:
            logger.info("gossip publish failed (sync will deliver): %s", exc)

    def _remember(self, data: bytes) -> bool:
        """Note a gossip message; False if it was already seen."""
        digest = _digest(data)
        if digest in self._seen:
            return False
        self._seen[digest] = True
        if len(self._seen) > _SEEN:
            self._seen.popitem(last=False)
        return True

    def _forget(self, data: bytes) -> None:
        self._seen.pop(_digest(data), None)

    def _validator(self, group_id: bytes) -> Callable[[str, bytes], bool]:
        def validate(origin: str, data: bytes) -> bool:
            digest = _digest(data)
            verdict = self._seen.get(digest)
            if verdict is not None:
                # Our own, or a second copy (a replay under a new gossip id): it gets the
                # first copy's verdict. Passing every copy let a refused message be
                # replayed for free and forwarded by us without any check.
                return verdict
            self._remember(data)
            accepted = self._apply_gossip(group_id, origin, data)
            if not accepted and digest in self._seen:  # (a deferred message was forgotten)
                self._seen[digest] = False
            return accepted

        return validate

    def _apply_gossip(self, group_id: bytes, origin: str, data: bytes) -> bool:
        """Rate-limit, verify and apply one gossip message; True lets gossip forward it."""
        engine = self._engine_of(group_id)
        if engine is None:
            return False
        queue = self._results_in.statistics()
        if queue.current_buffer_used >= queue.max_buffer_size:
            # Storing lags behind: do not apply what could not be stored (the engine
            # would then hold events the store never gets). Sync delivers it later.
            self.stats["gossip_deferred"] += 1
            self._forget(data)
            return False
        now = self._clock()
        if not self._limiter.allow(origin, now):
            self.stats["gossip_rate_limited"] += 1
            self.rejections.add(RATE_LIMITED)
            return False
        try:
            envelope = decode_envelope(data, max_size=MAX_SYNC_FRAME)
            # The publisher (verified by gossipsub's strict signing) must be the device
            # that signed the envelope: nobody re-publishes another's message as theirs.
            if envelope.sender != _device_of(origin):
                raise WireError("wrong-sender", "envelope signed by another device")
            batch = envelope.open()
            if not isinstance(batch, SyncBatch) or batch.group != group_id:
                raise WireError("unexpected-kind", "gossip carries sync.batch of this group")
            # The token taken above paid for the decode; the rest of the message's price
            # is charged before the first signature check.
            if not self._pay(origin, now, batch):
                self.stats["gossip_rate_limited"] += 1
                self.rejections.add(RATE_LIMITED)
                return False
            envelope.verify()
            result, errors = engine.apply_runs(batch, now=now, source=origin)
        except (WireError, GroupError, RateLimitedError) as exc:
            self.stats["gossip_rejected"] += 1
            reason = self.rejections.add_error(exc)
            logger.debug("rejected gossip from %s: %s", origin, exc)
            # Gossipsub verified the publisher's signature: the origin sent it.
            self._network.penalize(origin, reason)
            return False
        self.stats["gossip_events"] += len(result.accepted)
        if result.accepted or result.effects:
            # Room was checked above and nothing else runs in between (no await).
            self._results_in.send_nowait((group_id, result))
        if result.deferred:
            # An author over the ceiling: neither relayed nor held against the relay
            # (it may be honest); a later sync fetches the rest. The author hears nothing.
            self.stats["gossip_author_deferred"] += result.deferred
            self._forget(data)
        if result.buffered:
            self._fill_gap(group_id, origin)
        if errors:
            self.stats["gossip_rejected"] += 1
            reasons = [self.rejections.add_error(error) for error in errors]
            # A run refused for what only its sender can have caused (bytes no honest
            # node emits, a signature that does not verify: a relay verified it) costs
            # the sender, once per message; a gap or a full buffer of ours does not.
            proven = [r for e, r in zip(errors, reasons, strict=True) if _proves_misbehaviour(e)]
            if proven:
                self._network.penalize(origin, proven[0])
        return not errors and not result.deferred

    def _fill_gap(self, group_id: bytes, peer_id: str) -> None:
        """Sync with ``peer_id`` soon: it published events whose ancestors we lack, so it
        holds them (see :data:`GAP_SYNC_INTERVAL_S`)."""
        now = trio.current_time()
        if (
            self._nursery is None
            or group_id in self._gap_syncing
            or now < self._gap_next.get(group_id, now)
        ):
            return
        self._gap_syncing.add(group_id)
        self._gap_next[group_id] = now + GAP_SYNC_INTERVAL_S
        self._nursery.start_soon(self._gap_sync, group_id, peer_id)

    async def _gap_sync(self, group_id: bytes, peer_id: str) -> None:
        try:
            await self.sync_with(group_id, peer_id)
            self.stats["gap_syncs"] += 1
        except (NetworkError, ProtocolError, GroupError, trio.TooSlowError) as exc:
            logger.debug("gap sync of %s with %s failed: %s", group_id.hex()[:12], peer_id, exc)
        finally:
            self._gap_syncing.discard(group_id)

    async def _drain(self, group_id: bytes, subscription: Subscription) -> None:
        """Consume the topic. Validators usually did the work; anything that skipped them
        (an adapter without validators) is applied here."""
        async for origin, data in subscription:
            if self._remember(data):
                self._apply_gossip(group_id, origin, data)

    async def _results_loop(self) -> None:
        async for group_id, result in self._results_out:
            try:
                await self._on_result(group_id, result)
            except P2PChatError as exc:
                logger.warning("could not store group events: %s", exc)

    # -- pull -----------------------------------------------------------------------------

    async def sync_with(self, group_id: bytes, peer_id: str) -> int:
        """Run one anti-entropy exchange with ``peer_id``; return events accepted."""
        engine = self._engine_of(group_id)
        if engine is None:
            return 0
        session = SyncSession(engine, rejections=self.rejections)
        stream = await self._network.open_stream(peer_id, SYNC_PROTOCOL)
        try:
            with trio.fail_after(60):
                accepted = await self._exchange(stream, group_id, session, session.start().send)
            await stream.close()
        except BaseException:
            await _reset(stream)
            raise
        self.stats["syncs"] += 1
        return accepted

    async def fetch_live(
        self,
        group_id: bytes,
        peer_id: str,
        media: bytes,
        start: int,
        end: int,
        *,
        screen: BacklogScreen | None = None,
    ) -> int:
        """Fetch ``peer_id``'s live comments on ``media`` with ``start <= offset < end``;
        return how many were new. ``screen`` (from :meth:`live_screen`) is shared when
        several members are asked in one fetch."""
        stream = await self._network.open_stream(peer_id, LIVE_PROTOCOL)
        try:
            return await self.live.fetch(
                stream, want_for(group_id, media, start, end), screen=screen
            )
        except BaseException:
            await _reset(stream)
            raise

    def live_screen(self, group_id: bytes, media: bytes, start: int, end: int) -> BacklogScreen:
        return self.live.screen(want_for(group_id, media, start, end))

    async def _serve_sync(self, stream: FramedStream) -> None:
        peer = stream.remote_peer
        if not self._limiter.allow(peer, self._clock(), cost=10):
            await stream.reset()
            return
        frame = await stream.read_frame(MAX_SYNC_FRAME)
        if frame is None:
            return
        try:
            opening = self._open(frame, peer)
            if not isinstance(opening, SyncFrontier):
                raise WireError("unexpected-kind", "a sync starts with sync.frontier")
            engine = self._engine_of(opening.group)
            if engine is None:
                raise WireError("unknown-group", "not a member of that group")
            session = SyncSession(engine, rejections=self.rejections)
            step = session.receive(opening, now=self._clock())
            await self._handle_step(opening.group, step.result)
            with trio.fail_after(60):
                await self._exchange(stream, opening.group, session, step.send)
        except (ProtocolError, GroupError) as exc:
            self.stats["sync_refused"] += 1
            self.rejections.add_error(exc)
            logger.info("sync with %s refused: %s", peer, exc)
            await stream.reset()
        except trio.TooSlowError:
            await stream.reset()

    async def _exchange(
        self, stream: FramedStream, group_id: bytes, session: SyncSession, first: tuple[Struct, ...]
    ) -> int:
        accepted = 0
        outgoing = list(first)
        while True:
            for message in outgoing:
                await stream.write_frame(
                    seal(message, signing_key=self._signing_key, now=self._clock())
                )
            if session.done:
                return accepted
            frame = await stream.read_frame(MAX_SYNC_FRAME)
            if frame is None:
                raise WireError("truncated", "the peer ended the sync early")
            step = session.receive(self._open(frame, stream.remote_peer), now=self._clock())
            accepted += len(step.result.accepted)
            await self._handle_step(group_id, step.result)
            outgoing = list(step.send)
            if step.fetch:  # serving a want: the events' bytes are in the store
                found = await self._read_events(group_id, step.fetch)
                outgoing += session.provide(found).send

    def _open(self, frame: bytes, peer: str) -> Struct:
        """Decode a sync frame, charge ``peer`` for it, then verify it."""
        envelope = decode_envelope(frame, max_size=MAX_SYNC_FRAME)
        message = envelope.open()
        if not self._pay(peer, self._clock(), message):
            self.stats["sync_rate_limited"] += 1
            raise RateLimitedError("sync frames beyond the peer's rate")
        envelope.verify()
        return message

    def _pay(self, peer: str, now: int, message: Struct) -> bool:
        """Charge ``peer``'s verification budget one token per signature ``message`` may
        make us check: its envelope and each run of a batch (a run is verified with one
        signature). Charging per message instead let one gossip message or sync frame of
        256 forged runs cost 256 verifies for one token. Refusing here is no strike."""
        runs = len(message.runs) if isinstance(message, SyncBatch) else 0
        return self._verifies.allow(peer, now, cost=min(1 + runs, self._burst))

    async def _handle_step(self, group_id: bytes, result: ReceiveResult) -> None:
        if result.accepted or result.effects:
            await self._on_result(group_id, result)


async def _reset(stream: FramedStream) -> None:
    with contextlib.suppress(P2PChatError):
        await stream.reset()

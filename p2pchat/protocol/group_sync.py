"""Anti-entropy sync of one group with one peer: a sans-IO state machine (after h11).

Messages in, messages out; the node moves them over ``/p2pchat/sync/1.0.0`` in
envelopes. Each side sends::

    sync.frontier             its head per author device (a version vector)
    sync.want?                what it lacks, iff WANT_RULE says it lacks anything
    sync.batch*  sync.end     answers to the peer's want (end alone if no want comes)

WANT_RULE (both sides evaluate it on both frontiers, so each knows whether a want will
come, without an extra round trip): side X wants device ``d`` iff the peer's head for
``d`` has a higher ``seq`` than X's (X lacks ``d`` entirely counts as seq 0), or the
same ``seq`` with a different hash (a fork: X asks for that one event). A side that
will receive no want sends ``sync.end`` right after its frontier/want.

Cost: the frontiers are one head per author device, the wants one range per device
that differs, and the batches carry only missing events, so the bytes exchanged grow
with what is missing plus the number of authors, never with the history. Catch-up
verifies one signature per run (``authenticate_run``), not per event. Transitions not in
:data:`_TRANSITIONS` are a :class:`GroupError` (``"unexpected-message"``) and leave the
session in ``FAILED``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from p2pchat.errors import LocalProtocolError

from .codec import Struct
from .counters import ReasonCounter
from .group_engine import GroupEngine, ReceiveResult
from .group_log import GroupError, order_key
from .sync_messages import Head, Run, SyncBatch, SyncEnd, SyncFrontier, SyncWant, WantRange

__all__ = ["SyncLimits", "SyncState", "SyncStep", "SyncSession", "wants_for"]

_MAX_RANGES = 1024
_MAX_RUNS = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncLimits:
    """Per-exchange budgets: a batch stays well under ``MAX_FRAME`` (1 MiB)."""

    max_batch_bytes: int = 512 * 1024
    max_run_events: int = 256
    max_events: int = 50_000


class SyncState(enum.Enum):
    IDLE = "idle"
    SENT_FRONTIER = "sent-frontier"
    EXCHANGING = "exchanging"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class SyncStep:
    """What one input produced: messages to send, and what the engine accepted."""

    send: tuple[Struct, ...] = ()
    result: ReceiveResult = field(default_factory=ReceiveResult)
    #: Ids of held events whose bytes are in the node's store, not in memory: read
    #: them and pass them to :meth:`SyncSession.provide`, which returns what to send.
    fetch: tuple[bytes, ...] = ()


def wants_for(mine: SyncFrontier, theirs: SyncFrontier) -> list[WantRange]:
    """WANT_RULE: the ranges the holder of ``mine`` lacks from the holder of ``theirs``."""
    held = {h.device: h for h in mine.heads}
    out: list[WantRange] = []
    for head in theirs.heads:
        own = held.get(head.device)
        if own is None or own.seq < head.seq:
            first = 1 if own is None else own.seq + 1
            out.append(WantRange(device=head.device, first=first, last=head.seq))
        elif own.seq == head.seq and own.hash != head.hash:
            out.append(WantRange(device=head.device, first=head.seq, last=head.seq))
    return out


class SyncSession:
    """One exchange with one peer for one group. Not reusable: start a new one to resync."""

    def __init__(
        self,
        engine: GroupEngine,
        *,
        limits: SyncLimits | None = None,
        rejections: ReasonCounter | None = None,
    ) -> None:
        self._engine = engine
        self._rejections = rejections
        self._limits = limits or SyncLimits()
        self.state = SyncState.IDLE
        self._frontier: SyncFrontier | None = None
        self._peer_frontier: SyncFrontier | None = None
        self._expect_want = False
        self._sent_want = False
        self._sent_end = False
        self._peer_end = False
        #: The peer stopped early (``more``): start another exchange to continue.
        self.peer_has_more = False
        #: Runs the peer sent that we refused (a misbehaving or forked peer).
        self.refused_runs = 0
        # A want being served: (group, ids per device, bytes in memory, more).
        self._serving: tuple[bytes, list[list[bytes]], dict[bytes, bytes], bool] | None = None

    @property
    def done(self) -> bool:
        return self.state is SyncState.DONE

    def start(self) -> SyncStep:
        """Open the exchange: our frontier."""
        if self.state is not SyncState.IDLE:
            raise GroupError("unexpected-message", "session already started")
        self._frontier = self._engine.frontier()
        self.state = SyncState.SENT_FRONTIER
        return SyncStep(send=(self._frontier,))

    def receive(self, message: Struct, *, now: int) -> SyncStep:
        """Feed one message from the peer; returns what to send back."""
        handler = _TRANSITIONS.get((self.state, type(message)))
        if handler is None or getattr(message, "group", None) != self._engine.group_id:
            self.state = SyncState.FAILED
            raise GroupError("unexpected-message", f"{type(message).__name__} in {self.state}")
        try:
            step = handler(self, message, now)
        except GroupError:
            self.state = SyncState.FAILED
            raise
        if self._sent_end and self._peer_end and self.state is SyncState.EXCHANGING:
            self.state = SyncState.DONE
        return step

    # --- transitions ----------------------------------------------------------------

    def _on_frontier_first(self, message: Struct, now: int) -> SyncStep:
        opening = self.start().send
        step = self._on_frontier(message, now)
        return SyncStep(send=opening + step.send)

    def _on_frontier(self, message: Struct, now: int) -> SyncStep:
        assert isinstance(message, SyncFrontier)
        assert self._frontier is not None
        self._peer_frontier = message
        self.state = SyncState.EXCHANGING
        send: list[Struct] = []
        wanted = wants_for(self._frontier, message)
        if wanted:
            send.append(SyncWant(group=message.group, ranges=tuple(wanted[:_MAX_RANGES])))
            self._sent_want = True
        self._expect_want = bool(wants_for(message, self._frontier))
        if not self._expect_want:
            send.append(SyncEnd(group=message.group, more=False))
            self._sent_end = True
        return SyncStep(send=tuple(send))

    def _on_want(self, message: Struct, now: int) -> SyncStep:
        assert isinstance(message, SyncWant)
        if not self._expect_want or self._sent_end or self._serving is not None:
            raise GroupError("unexpected-message", "a want we did not expect")
        plan, more = self._plan(message)
        log = self._engine.log
        # The bytes in memory (events not stored yet) are taken now: the node may store
        # them, and drop them from memory, before the fetch of the others comes back.
        have = {i: raw for ids in plan for i in ids if (raw := log.raw(i)) is not None}
        fetch = tuple(i for ids in plan for i in ids if i not in have)
        self._serving = (message.group, plan, have, more)
        if fetch:
            return SyncStep(fetch=fetch)
        return self.provide({})

    def _on_batch(self, message: Struct, now: int) -> SyncStep:
        assert isinstance(message, SyncBatch)
        if not self._sent_want or self._peer_end:
            raise GroupError("unexpected-message", "a batch we did not ask for")
        result, errors = self._engine.apply_runs(message, now=now, catch_up=True)
        self.refused_runs += len(errors)
        if self._rejections is not None:
            for error in errors:
                self._rejections.add_error(error)
        return SyncStep(result=result)

    def _on_end(self, message: Struct, now: int) -> SyncStep:
        assert isinstance(message, SyncEnd)
        if self._peer_end:
            raise GroupError("unexpected-message", "a second end")
        self._peer_end = True
        self.peer_has_more = message.more
        return SyncStep()

    # --- serving --------------------------------------------------------------------

    def provide(self, found: Mapping[bytes, bytes]) -> SyncStep:
        """The stored bytes a step's ``fetch`` asked for (by event id; the node reads
        them from its store): returns the batches and the end. An event missing from
        ``found`` cuts its device's run there (the peer asks again next time)."""
        if self._serving is None:
            raise LocalProtocolError("no fetch is waiting for its bytes")
        (group, plan, have, more), self._serving = self._serving, None
        chunks: list[list[tuple[bytes, bytes]]] = []
        for ids in plan:
            events: list[tuple[bytes, bytes]] = []
            for event_id in ids:
                data = have.get(event_id) or found.get(event_id)
                if data is None:
                    more = True
                    break
                events.append((event_id, data))
            chunks += self._chunks(events)
        self._sent_end = True
        return SyncStep(send=(*self._pack(group, chunks), SyncEnd(group=group, more=more)))

    def _plan(self, want: SyncWant) -> tuple[list[list[bytes]], bool]:
        """The ids of the wanted ranges' held events (one list per device), at most
        ``max_events`` in all. When the peer's head hash for a device disagrees with
        ours at the same seq, the run starts one event earlier so the peer sees both
        versions (a fork proof)."""
        log = self._engine.log
        peer = {h.device: h for h in self._peer_frontier.heads} if self._peer_frontier else {}
        plan: list[list[bytes]] = []
        budget = self._limits.max_events
        more = False
        for wanted in want.ranges:
            first = wanted.first
            head: Head | None = peer.get(wanted.device)
            if (
                head is not None
                and head.seq == first - 1
                and log.id_at(wanted.device, head.seq) not in (None, head.hash)
            ):
                first = head.seq
            ids = [s.event_id for s in log.chain(wanted.device, first, wanted.last)]
            if len(ids) > budget:
                ids, more = ids[:budget], True
            budget -= len(ids)
            if ids:
                plan.append(ids)
            if budget <= 0:
                more = more or wanted is not want.ranges[-1]
                break
        return plan, more

    def _pack(self, group: bytes, chunks: list[list[tuple[bytes, bytes]]]) -> list[SyncBatch]:
        """Runs, oldest first by the total order of their first events, in batches."""
        log = self._engine.log
        keyed = []
        for chunk in chunks:
            held = log.get(chunk[0][0])
            assert held is not None  # planned from the held chains
            keyed.append((order_key(held.event), held.event.author_device, chunk))
        keyed.sort(key=lambda item: item[0])
        batches: list[SyncBatch] = []
        runs: list[Run] = []
        size = 0
        for _, device, chunk in keyed:
            run = Run(device=device, events=tuple(data for _, data in chunk))
            run_size = sum(len(data) for _, data in chunk) + 64
            if runs and (size + run_size > self._limits.max_batch_bytes or len(runs) >= _MAX_RUNS):
                batches.append(SyncBatch(group=group, runs=tuple(runs)))
                runs, size = [], 0
            runs.append(run)
            size += run_size
        if runs:
            batches.append(SyncBatch(group=group, runs=tuple(runs)))
        return batches

    def _chunks(self, events: list[tuple[bytes, bytes]]) -> list[list[tuple[bytes, bytes]]]:
        """Cut one device's events into runs of at most ``max_run_events`` events and
        ``max_batch_bytes`` bytes (a run never spans two batches)."""
        chunks: list[list[tuple[bytes, bytes]]] = []
        current: list[tuple[bytes, bytes]] = []
        size = 0
        for item in events:
            too_big = size + len(item[1]) + 64 > self._limits.max_batch_bytes
            if current and (len(current) >= self._limits.max_run_events or too_big):
                chunks.append(current)
                current, size = [], 0
            current.append(item)
            size += len(item[1])
        if current:
            chunks.append(current)
        return chunks


_Handler = Callable[[SyncSession, Struct, int], SyncStep]
#: Every legal (state, message) pair; anything else is a protocol error.
_TRANSITIONS: dict[tuple[SyncState, type[Struct]], _Handler] = {
    (SyncState.IDLE, SyncFrontier): SyncSession._on_frontier_first,
    (SyncState.SENT_FRONTIER, SyncFrontier): SyncSession._on_frontier,
    (SyncState.EXCHANGING, SyncWant): SyncSession._on_want,
    (SyncState.EXCHANGING, SyncBatch): SyncSession._on_batch,
    (SyncState.EXCHANGING, SyncEnd): SyncSession._on_end,
}

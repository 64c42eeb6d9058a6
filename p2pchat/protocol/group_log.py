"""The union of per-device signed logs of one group: structural validation, buffering, forks.

This module knows *nothing* about membership or content: it decides only whether an
event is a well-formed, authentic continuation of its author device's chain, whose
causal references (``prev`` and ``deps``) are all held. That decision depends on the
event and its ancestors alone, so every node that holds the same ancestors decides the
same way, which is what lets replicas converge (``protocol-spec/groups.md`` §2). What an
event *means* (is its author allowed to do this?) is decided later, by the fold over
the total order (:mod:`.group_state`): an event that is structurally valid but not
permitted stays in the log (its chain must stay contiguous) and has no effect.

Checks are ordered cheapest first; the signature (the one expensive step) comes after
every check that needs only the bytes and the held state, and a caller rate-limits
before calling in at all.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from p2pchat.errors import LocalProtocolError, WireError
from p2pchat_crypto.errors import CryptoError
from p2pchat_crypto.identity import DeviceCertificate

from .group_events import GroupEvent, decode_event
from .group_log_types import (
    AddOutcome,
    ForkProof,
    GroupError,
    LogLimits,
    StoredEvent,
    order_key,
)
from .sync_messages import Run, authenticate_run

__all__ = [
    "GroupError",
    "MAX_TS_SKEW_MS",
    "LogLimits",
    "StoredEvent",
    "ForkProof",
    "AddOutcome",
    "GroupLog",
    "order_key",
    "decode_stored",
    "add_in_store_order",
    "StoreOrderLoad",
    "first_recent",
]

#: How far an event's ``ts`` may lag behind its parents', and run ahead of the
#: receiver's clock. Bounds how far an author can backdate a vote or a join.
MAX_TS_SKEW_MS = 10 * 60 * 1000

#: Kinds that only private groups use, and content kinds private groups must seal.
_PRIVATE_ONLY = frozenset({"sealed", "skey.dist"})
_CONTENT_KINDS = frozenset(
    {"post", "reply", "react", "edit", "delete", "share", "poll", "vote", "buy", "buy.join"}
)

#: Kinds whose events the log indexes by kind (see :meth:`GroupLog.of_kinds`).
_INDEXED_KINDS = frozenset({"member.remove", "member.ban"})


@dataclass(slots=True)
class _Pending:
    stored: StoredEvent
    verified: bool


class GroupLog:
    """Accepted events of one group, indexed by id, by device chain and in total order."""

    def __init__(self, genesis: StoredEvent, *, kind: str, limits: LogLimits) -> None:
        self.group_id = genesis.event_id
        self._kind = kind
        self._limits = limits
        self._events: dict[bytes, StoredEvent] = {}
        # device -> the first-seen event id of each sequence number (index seq - 1): a
        # chain is contiguous from 1 (an event is held only once its prev is), so its
        # length is the device's highest contiguous canonical seq.
        self._chains: dict[bytes, list[bytes]] = {}
        # One shared object per device or account key named by held events.
        self._keys: dict[bytes, bytes] = {}
        self._accounts: dict[bytes, bytes] = {}  # device -> account (from its certificate)
        self._frozen: dict[bytes, int] = {}  # device -> fork seq
        self._proofs: dict[bytes, ForkProof] = {}
        # Held events in the total order (sorted by :func:`order_key` of each, found by
        # bisection on it: no key tuple kept per event).
        self._order: list[StoredEvent] = []
        self._tips: set[bytes] = set()
        self._pending: dict[bytes, _Pending] = {}
        self._waiting: dict[bytes, list[bytes]] = {}
        self._pending_bytes = 0
        self._branch_events: dict[bytes, int] = {}
        self._min_insert: int | None = None
        self._new_forks: list[tuple[bytes, int, ForkProof]] = []
        self._indexed: dict[bytes, None] = {}  # ids of events of _INDEXED_KINDS
        # The exact bytes of held events the node has not stored yet (see mark_stored),
        # and the genesis's (always): the bytes of the others are read from the store.
        self._raw: dict[bytes, bytes] = {}
        # A fork found on a held event whose bytes are in the store: held id -> (device,
        # seq, the other event's bytes), until provide_fork_bytes makes the proof.
        self._proof_wanted: dict[bytes, tuple[bytes, int, bytes]] = {}
        self._new_proof_wanted: list[bytes] = []
        self._insert(genesis, in_store=False)

    # --- queries -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._events)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._events

    def get(self, event_id: bytes) -> StoredEvent | None:
        return self._events.get(event_id)

    def raw(self, event_id: bytes) -> bytes | None:
        """A held event's exact bytes if they are in memory (not stored yet, or the
        genesis); ``None``: ask the store."""
        return self._raw.get(event_id)

    def with_bytes(self, stored: StoredEvent) -> StoredEvent:
        """``stored`` with its bytes if they are in memory."""
        raw = self._raw.get(stored.event_id)
        return stored if raw is None else StoredEvent(stored.event, raw)

    def mark_stored(self, event_ids: Iterable[bytes]) -> None:
        """The node has stored these events: drop their bytes from memory (the
        genesis's are kept: a node hands them out with its group record)."""
        for event_id in event_ids:
            if event_id != self.group_id:
                self._raw.pop(event_id, None)

    @property
    def unstored_count(self) -> int:
        return len(self._raw)

    def ordered(self, start: int = 0) -> Iterator[StoredEvent]:
        """Accepted events in the total order, from index ``start``."""
        yield from self._order[start:]

    def account_of(self, device: bytes) -> bytes | None:
        return self._accounts.get(device)

    def devices(self) -> dict[bytes, bytes]:
        """Every device with an accepted first event, and its account."""
        return dict(self._accounts)

    @property
    def frozen(self) -> dict[bytes, int]:
        """Forked devices and the sequence number at which each one forked."""
        return dict(self._frozen)

    @property
    def fork_proofs(self) -> tuple[ForkProof, ...]:
        return tuple(self._proofs.values())

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def heads(self) -> dict[bytes, tuple[int, bytes]]:
        """Per device, the highest contiguous sequence number held and its event id.

        A forked device reports only the prefix every honest node agrees on (up to the
        fork), so frontiers never ask for either branch.
        """
        out: dict[bytes, tuple[int, bytes]] = {}
        for device, ids in self._chains.items():
            seq = len(ids)
            top = min(seq, self._frozen.get(device, seq + 1) - 1)
            if top >= 1:
                out[device] = (top, ids[top - 1])
        return out

    def chain(self, device: bytes, first: int, last: int) -> list[StoredEvent]:
        """The held canonical events ``first..last`` of ``device`` (stops at a gap), as
        held (their bytes only if in memory: see :meth:`raw`)."""
        ids = self._chains.get(device, [])
        if first < 1:
            return []
        return [self._events[event_id] for event_id in ids[first - 1 : max(last, 0)]]

    def head_of(self, device: bytes) -> tuple[int, bytes] | None:
        """The device's highest contiguous canonical event (forks not capped)."""
        ids = self._chains.get(device)
        return None if not ids else (len(ids), ids[-1])

    def id_at(self, device: bytes, seq: int) -> bytes | None:
        ids = self._chains.get(device)
        return ids[seq - 1] if ids is not None and 1 <= seq <= len(ids) else None

    def of_kinds(self) -> list[bytes]:
        """Ids of the held events of the few kinds indexed by kind (removals and bans:
        rare, and listed among the messages), in acceptance order."""
        return list(self._indexed)

    def tips(self) -> list[StoredEvent]:
        """Events no held event references yet: what a new event should name in ``deps``."""
        return [self._events[t] for t in self._tips]

    # --- adding --------------------------------------------------------------------

    def add(
        self, stored: StoredEvent, *, verified: bool, now: int | None, in_store: bool = False
    ) -> AddOutcome:
        """Accept, buffer or refuse one decoded event (raises :class:`GroupError`).

        ``verified`` says the signature was already checked (a run, or the trusted
        reload path); ``now`` is ``None`` on the trusted path (no future-time check);
        ``in_store``: the event comes from the node's store (its bytes are not kept).
        """
        outcome = AddOutcome()
        self._add_one(stored, verified=verified, now=now, outcome=outcome, in_store=in_store)
        return outcome

    def add_run(self, run: Run, *, now: int | None) -> AddOutcome:
        """Authenticate a run with one signature and add its events.

        The run may start at or below our head: overlapping events must be identical
        (else the device forked, and the overlapping event's own signature is checked
        to make the proof).
        """
        first = decode_event(run.events[0])
        after = None
        if first.seq > 1:
            prev_id = self.id_at(run.device, first.seq - 1)
            if prev_id is None:
                raise GroupError("broken-chain", "run does not continue a held event")
            after = (first.seq - 1, prev_id)
        try:
            events = authenticate_run(run, group=self.group_id, after=after)
        except WireError as exc:
            if exc.reason == "broken-chain" and after is not None and first.prev != after[1]:
                # The run's first event contradicts our chain: check it alone for a fork.
                return self.add(StoredEvent(first, run.events[0]), verified=False, now=now)
            raise
        outcome = AddOutcome()
        for event, data in zip(events, run.events, strict=True):
            held = self.id_at(event.author_device, event.seq)
            verified = held is None or held == event.event_id
            self._add_one(StoredEvent(event, data), verified=verified, now=now, outcome=outcome)
        return outcome

    def add_fork_proof(self, proof: ForkProof) -> bool:
        """Freeze a device on a verified proof; return whether it changed anything."""
        device, seq = proof.check(group=self.group_id)
        return self._freeze(device, seq, proof)

    def _freeze(self, device: bytes, seq: int, proof: ForkProof) -> bool:
        old = self._frozen.get(device)
        if old is not None and old <= seq:
            return False
        self._frozen[device] = seq
        self._proofs[device] = proof
        self._new_forks.append((device, seq, proof))
        return True

    def take_proof_wanted(self) -> list[bytes]:
        """Held events whose stored bytes a fork's proof needs, found since the last
        call (see :meth:`provide_fork_bytes`)."""
        wanted, self._new_proof_wanted = self._new_proof_wanted, []
        return wanted

    def take_new_forks(self) -> list[tuple[bytes, int, ForkProof]]:
        """Devices frozen since the last call, as ``(device, seq, proof)``."""
        forks, self._new_forks = self._new_forks, []
        return forks

    def _add_one(
        self,
        stored: StoredEvent,
        *,
        verified: bool,
        now: int | None,
        outcome: AddOutcome,
        in_store: bool = False,
    ) -> None:
        stack: list[tuple[StoredEvent, bool]] = [(stored, verified)]
        top = True
        while stack:
            item, item_verified = stack.pop()
            try:
                accepted = self._try(
                    item, verified=item_verified, now=now, outcome=outcome, in_store=in_store
                )
            except GroupError:
                if top:
                    raise
                continue  # a buffered event that turned out invalid: drop it quietly
            finally:
                top = False
            if accepted:
                for waiter in self._waiting.pop(item.event_id, ()):
                    pending = self._pending.pop(waiter, None)
                    if pending is not None:
                        self._pending_bytes -= len(pending.stored.data)
                        stack.append((pending.stored, pending.verified))

    def _try(
        self,
        stored: StoredEvent,
        *,
        verified: bool,
        now: int | None,
        outcome: AddOutcome,
        in_store: bool,
    ) -> bool:
        event = stored.event
        if event.event_id in self._events or event.event_id in self._pending:
            return False
        if event.group_id != self.group_id:
            raise GroupError("wrong-group", "event of another group")
        self._check_kind(event)
        if now is not None and event.ts > now + MAX_TS_SKEW_MS:
            raise GroupError("from-future", "event timestamp is ahead of our clock")
        missing = self._missing_parent(event)
        if missing is not None:
            if not verified:
                self._verify(event)
            self._buffer(stored, missing, verified=True, outcome=outcome)
            return False
        device = event.author_device
        held = self.id_at(device, event.seq)
        fork_seq = self._frozen.get(device)
        if held is not None or (fork_seq is not None and event.seq >= fork_seq):
            # Same device, same seq, different bytes: a fork. Prove it, keep both.
            branch = self._branch_events.get(device, 0)
            if branch >= self._limits.max_fork_events:
                raise GroupError("forked-device", "too many events on a forked device's branch")
            if not verified:
                self._verify(event)
                verified = True
            self._branch_events[device] = branch + 1
            held_raw = None if held is None else self._raw.get(held)
            if held is not None and held_raw is None:
                # The held event's bytes are in the store: the node reads them and the
                # proof is made then (provide_fork_bytes).
                if held not in self._proof_wanted:
                    self._proof_wanted[held] = (device, event.seq, stored.data)
                    self._new_proof_wanted.append(held)
            elif held_raw is not None:
                self._prove(held_raw, device, event.seq, stored.data)
        self._check_links(event)
        self._check_cert(event, check_signature=now is not None)
        if not verified:
            self._verify(event)
        outcome.accepted.append(self._insert(stored, in_store=in_store))
        return True

    def _prove(self, held: bytes, device: bytes, seq: int, other: bytes) -> None:
        # The held event may have come inside a run (its own signature unchecked); a
        # proof others can verify needs both signatures.
        self._verify(decode_event(held), reason="forked-device")
        self._freeze(device, seq, ForkProof(first=held, second=other))

    def provide_fork_bytes(self, event_id: bytes, data: bytes) -> bool:
        """The stored bytes of a held event a fork's proof waits for (see
        :attr:`AddOutcome.proof_wanted`): make the proof and freeze the device. Returns
        whether it changed anything; raises :class:`GroupError` if ``data`` is not that
        event's bytes or does not verify."""
        wanted = self._proof_wanted.get(event_id)
        if wanted is None:
            return False
        try:
            event = decode_event(data)
        except WireError as exc:
            raise GroupError("forked-device", exc.reason) from None
        if event.event_id != event_id:
            raise GroupError("forked-device", "not the bytes of the held event")
        device, seq, other = wanted
        self._prove(data, device, seq, other)
        del self._proof_wanted[event_id]
        return True

    def _check_kind(self, event: GroupEvent) -> None:
        if event.kind == "genesis":
            raise GroupError("bad-kind", "a second genesis")
        if event.kind == "live.comment":
            raise GroupError("bad-kind", "live comments are not log entries")
        private = self._kind == "private"
        if not private and event.kind in _PRIVATE_ONLY:
            raise GroupError("bad-kind", f"{event.kind} only exists in private groups")
        if private and event.kind in _CONTENT_KINDS:
            raise GroupError("must-be-sealed", "private groups carry content sealed")

    def _missing_parent(self, event: GroupEvent) -> bytes | None:
        if event.prev is not None and event.prev not in self._events:
            return event.prev
        for dep in event.deps:
            if dep not in self._events:
                return dep
        return None

    def _check_links(self, event: GroupEvent) -> None:
        parents = [self._events[dep].event for dep in event.deps]
        if any(p.author_device == event.author_device for p in parents):
            raise GroupError("bad-deps", "deps name the author's own chain")
        if event.prev is not None:
            prev = self._events[event.prev].event
            if prev.author_device != event.author_device or prev.seq != event.seq - 1:
                raise GroupError("broken-chain", "prev is not the device's previous event")
            parents.append(prev)
        lamport = 1 + max((p.lamport for p in parents), default=0)
        if event.lamport != lamport:
            raise GroupError("bad-lamport", "lt must be 1 + the largest parent lt")
        if parents and event.ts + MAX_TS_SKEW_MS < max(p.ts for p in parents):
            raise GroupError("ts-regress", "timestamp far behind a parent's")

    def _check_cert(self, event: GroupEvent, *, check_signature: bool) -> None:
        known = self._accounts.get(event.author_device)
        if event.cert is None:
            if known is None:
                raise GroupError("missing-cert", "a device's first event carries its cert")
            if known != event.author_account:
                raise GroupError("account-mismatch", "device belongs to another account")
            return
        try:
            cert = DeviceCertificate.decode(event.cert)
            if check_signature:
                cert.verify(now=event.ts)
        except CryptoError:
            raise GroupError("bad-cert", "device certificate does not verify") from None
        if cert.device_key != event.author_device or cert.account_key != event.author_account:
            raise GroupError("bad-cert", "certificate binds another device or account")
        if known is not None and known != event.author_account:
            raise GroupError("account-mismatch", "device belongs to another account")

    @staticmethod
    def _verify(event: GroupEvent, *, reason: str | None = None) -> None:
        try:
            event.verify()
        except WireError as exc:
            raise GroupError(reason or exc.reason, "event signature does not verify") from None

    def _buffer(
        self, stored: StoredEvent, missing: bytes, *, verified: bool, outcome: AddOutcome
    ) -> None:
        if stored.event_id in self._pending:
            return
        size = len(stored.data)
        if (
            len(self._pending) >= self._limits.max_pending
            or self._pending_bytes + size > self._limits.max_pending_bytes
        ):
            raise GroupError("buffer-full", "too many events waiting for their ancestors")
        self._pending[stored.event_id] = _Pending(stored, verified)
        self._pending_bytes += size
        self._waiting.setdefault(missing, []).append(stored.event_id)
        outcome.buffered += 1

    def _insert(self, stored: StoredEvent, *, in_store: bool) -> StoredEvent:
        """Hold an accepted event; returns it with its bytes (to store and relay). Held
        slim (see :meth:`GroupEvent.slim`), since nothing verifies it again from memory,
        naming the objects already held for its group, keys, ``prev`` and ``deps`` (one
        object each per log, not one per event that names them), and without its bytes:
        those stay in :attr:`_raw` only until the node has stored them."""
        event = self._held(stored.event)
        data = stored.data
        stored = StoredEvent(event, None)
        if not in_store or event.event_id == self.group_id:
            self._raw[event.event_id] = data
        self._events[event.event_id] = stored
        if event.kind in _INDEXED_KINDS:
            self._indexed[event.event_id] = None
        device = event.author_device
        ids = self._chains.setdefault(device, [])
        if event.seq == len(ids) + 1:
            ids.append(event.event_id)
        if event.cert is not None or device not in self._accounts:
            self._accounts[device] = event.author_account
        if event.prev is not None:
            self._tips.discard(event.prev)
        self._tips.difference_update(event.deps)
        self._tips.add(event.event_id)
        key = order_key(event)
        order = self._order
        if not order or order_key(order[-1].event) < key:
            index = len(order)  # most events sort last: no bisection
            order.append(stored)
        else:
            index = bisect.bisect_left(order, key, key=_stored_order)
            order.insert(index, stored)
        if self._min_insert is None or index < self._min_insert:
            self._min_insert = index
        return StoredEvent(event, data)

    def _held(self, event: GroupEvent) -> GroupEvent:
        keys, events = self._keys, self._events
        return event.slim(
            group=None if event.group is None else self.group_id,
            author_device=keys.setdefault(event.author_device, event.author_device),
            author_account=keys.setdefault(event.author_account, event.author_account),
            # Held parents (an event is accepted only once they are): their own ids.
            prev=None if event.prev is None else events[event.prev].event_id,
            deps=tuple(events[dep].event_id for dep in event.deps),
        )

    def take_min_insert(self) -> int | None:
        """The lowest position in the total order where an event was inserted since the
        last call (``None``: nothing inserted). The engine replays its fold from there."""
        index, self._min_insert = self._min_insert, None
        return index

    def index_of(self, event: GroupEvent) -> int:
        """Position of an accepted event in the total order."""
        return bisect.bisect_left(self._order, order_key(event), key=_stored_order)


def _stored_order(stored: StoredEvent) -> tuple[int, bytes]:
    return order_key(stored.event)


def decode_stored(data: bytes, *, slim: bool = False) -> StoredEvent:
    """Decode event bytes into a :class:`StoredEvent` (``WireError`` if malformed);
    ``slim`` for bytes already verified (see :meth:`GroupEvent.slim`)."""
    return StoredEvent(decode_event(data, slim=slim), data)


def first_recent(events: Sequence[bytes], is_recent: Callable[[int], bool]) -> int:
    """How many of a run's events come before the first one authored recently (by
    ``is_recent`` of its ``ts``; ``len(events)`` if none). Found by bisection, decoding a
    few events: a run is one device's chain, whose timestamps rise but for the skew each
    event may lag its parents by (:data:`MAX_TS_SKEW_MS`), which is all it can misplace."""
    return bisect.bisect_left(
        range(len(events)), True, key=lambda i: is_recent(decode_event(events[i]).ts)
    )


def add_in_store_order(
    events: Iterable[bytes],
    start: Callable[[StoredEvent], GroupLog],
    *,
    max_early: int,
    in_store: bool = False,
) -> bool:
    """The trusted load of a node's stored events: each decoded and held in turn, in the
    store's order (``start`` makes the log from the genesis). A node stores an event once
    its parents are, so that order is causal, and the decoded copies of a whole log never
    coexist with the held ones (that transient doubled a start's peak and, fragmented,
    stayed in its RSS). ``False`` if the order is not causal enough for the log's buffer:
    then load them sorted. Either way the result is the same (the fold follows the total
    order, whatever order events are added in). Raises :class:`LocalProtocolError`
    unless there is exactly one genesis. (:class:`StoreOrderLoad`: the same, a page of
    events at a time.)"""
    load = StoreOrderLoad(start, max_early=max_early, in_store=in_store)
    if not load.add(events):
        return False
    load.finish()
    return True


class StoreOrderLoad:
    """:func:`add_in_store_order` fed a page of events at a time (so that a page's
    bytes are freed before the next one is read)."""

    def __init__(
        self, start: Callable[[StoredEvent], GroupLog], *, max_early: int, in_store: bool
    ) -> None:
        self._start = start
        self._max_early = max_early
        self._in_store = in_store
        self._log: GroupLog | None = None
        self._early: list[StoredEvent] = []  # events before the genesis (not a node's order)

    def add(self, events: Iterable[bytes]) -> bool:
        """Add the next events; ``False``: not causal enough, load them sorted instead."""
        for data in events:
            stored = decode_stored(data, slim=True)
            if stored.event.kind == "genesis":
                if self._log is not None:
                    raise LocalProtocolError("a group's events hold exactly one genesis")
                self._log = self._start(stored)
                pending = sorted(self._early, key=lambda s: order_key(s.event))
                self._early = []
            elif self._log is None:
                self._early.append(stored)
                if len(self._early) > self._max_early:
                    return False
                continue
            else:
                pending = [stored]
            for item in pending:
                try:
                    self._log.add(item, verified=True, now=None, in_store=self._in_store)
                except GroupError as exc:
                    if exc.reason == "buffer-full":
                        return False
                    raise
        return True

    def finish(self) -> GroupLog:
        """The log, once every event is added (:class:`LocalProtocolError` if no genesis)."""
        if self._log is None:
            raise LocalProtocolError("a group's events hold exactly one genesis")
        return self._log

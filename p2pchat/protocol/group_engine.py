"""The sans-IO group engine: bytes in, accepted events and effects out.

The node drives one :class:`GroupEngine` per group. It feeds it event bytes (gossip),
runs (sync) and fork proofs; it stores every accepted event's exact bytes and executes
the returned *effects* (send sender keys over pairwise sessions, decrypt a sealed event,
show a fork warning). The engine never does I/O and never reads a clock: ``now`` is
passed in, and authoring needs the caller's :class:`~p2pchat_crypto.identity.Device`.

Layers inside (``protocol-spec/groups.md``):

* :class:`~.group_log.GroupLog` accepts an event iff it is a structurally valid,
  authentic continuation of its device chain with every ancestor held (else buffers it);
* a *fold* (:mod:`.group_fold`) replays the accepted events in the total order
  ``(lt, event id)`` through :class:`~.group_state.MembershipFold` and
  :class:`~.group_content.ContentFold`. Events appended at the end of the order are
  folded incrementally; an event that sorts into the middle (a late arrival) makes the
  next read replay from the newest checkpoint before it, which is what guarantees that
  every replica computes the same state from the same set of events.

Effects are computed by comparing the membership before and after each call, so they
are right whichever path (incremental or replay) produced the new state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nacl.signing import SigningKey

from p2pchat.errors import LocalProtocolError, PermissionDeniedError
from p2pchat_crypto.identity import Device
from p2pchat_crypto.sealed import Rng

from .codec import Struct
from .group_content import CONTENT_KINDS, GroupView
from .group_effects import (
    Effect,
    ForkDetected,
    LiveCommentReceived,
    MemberJoined,
    MemberLeft,
    NewEpochNeeded,
    ReceiveResult,
    RoleChanged,
    SealedReceived,
    SenderKeyNeeded,
)
from .group_events import (
    Genesis,
    GroupDescriptor,
    InnerEvent,
    LiveComment,
    sign_event,
)
from .group_live import LiveConfig, LiveEntry, LiveIndex
from .group_log import (
    MAX_TS_SKEW_MS,
    AddOutcome,
    ForkProof,
    GroupError,
    GroupLog,
    LogLimits,
    StoredEvent,
    StoreOrderLoad,
    add_in_store_order,
    decode_stored,
    order_key,
)
from .group_receive import Receiving
from .limits import AuthorCeiling, PeerLimiter
from .sync_messages import Head, SyncFrontier

_KEY_EFFECTS = (SenderKeyNeeded, NewEpochNeeded)  # what authoring may ask of the node
__all__ = [
    "EngineConfig",
    "MemberJoined",
    "MemberLeft",
    "RoleChanged",
    "NewEpochNeeded",
    "SenderKeyNeeded",
    "ForkDetected",
    "SealedReceived",
    "LiveCommentReceived",
    "Effect",
    "ReceiveResult",
    "GroupEngine",
]

_MAX_DEPS = 32


class EngineLoad:
    """See :meth:`GroupEngine.loading`: :meth:`add` pages of stored events in the
    store's order, then :meth:`finish`. If :meth:`add` returns ``False`` (the order is
    not causal enough), load them all with :meth:`GroupEngine.load` instead."""

    def __init__(self, load: StoreOrderLoad, made: list[GroupEngine]) -> None:
        self._load = load
        self._made = made

    def add(self, events: Iterable[bytes]) -> bool:
        return self._load.add(events)

    def finish(self) -> GroupEngine:
        self._load.finish()
        return self._made[0]._loaded()


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    log: LogLimits = field(default_factory=LogLimits)
    live: LiveConfig = field(default_factory=LiveConfig)
    #: The author ceiling: events per second (and burst) accepted from one account,
    #: whatever the group's slow mode. What is over it is *deferred*: not stored, not
    #: relayed, fetched by a later sync (so at most this rate, and nothing is lost).
    author_rate: float = 50.0
    author_burst: int = 1000


# --- the engine ----------------------------------------------------------------------


class GroupEngine(Receiving):
    """One group's replicated state. Build with :meth:`create`, :meth:`from_genesis` or
    :meth:`load`; never shares mutable state with its callers."""

    def __init__(
        self,
        genesis: StoredEvent,
        *,
        local_device: bytes | None,
        config: EngineConfig,
        limiter: PeerLimiter | None,
    ) -> None:
        if not isinstance(genesis.event.parsed, Genesis):
            raise GroupError("bad-kind", "the first event of a group is its genesis")
        self._descriptor: GroupDescriptor = genesis.event.parsed.descriptor
        self._owner = genesis.event.author_account
        self._config = config
        self._limiter = limiter
        self._ceiling = AuthorCeiling(rate=config.author_rate, burst=config.author_burst)
        #: Until then a sync brings history, all of it (see :meth:`expect_history`).
        self._history_until = 0
        self._local = local_device
        self._log = GroupLog(genesis, kind=self._descriptor.kind, limits=config.log)
        self._live = LiveIndex(config.live)
        self._plaintexts: dict[bytes, tuple[str, Any]] = {}
        self._known_devices: frozenset[bytes] = frozenset()
        self._unreported_forks: list[tuple[bytes, int, ForkProof]] = []
        self._revoked_upto: dict[tuple[bytes, bytes], int] = {}
        self._author_effects: list[Effect] = []
        self._view: GroupView | None = None
        self._void: set[bytes] = set()
        self._checkpoints = []
        self._reset_fold()
        self._ensure()
        self._before = self._membership

    def __repr__(self) -> str:
        return (
            f"GroupEngine(group={self.group_id.hex()[:16]}…, kind={self._descriptor.kind!r}, "
            f"events={len(self._log)})"
        )

    # --- construction ---------------------------------------------------------------

    @classmethod
    def create(
        cls,
        descriptor: GroupDescriptor,
        *,
        device: Device,
        now: int,
        rng: Rng,
        config: EngineConfig | None = None,
        limiter: PeerLimiter | None = None,
    ) -> tuple[GroupEngine, bytes]:
        """A new group owned by ``device``'s account; returns the engine and the genesis
        bytes (whose hash is the group id)."""
        data = sign_event(
            Genesis(descriptor=descriptor, nonce=rng(16)),
            signing_key=SigningKey(device.signing_seed()),
            account=device.certificate.account_key,
            group=None,
            seq=1,
            prev=None,
            lamport=1,
            now=now,
            cert=device.certificate.encode(),
        )
        engine = cls(
            decode_stored(data),
            local_device=device.public_key,
            config=config or EngineConfig(),
            limiter=limiter,
        )
        return engine, data

    @classmethod
    def from_genesis(
        cls,
        data: bytes,
        *,
        group_id: bytes | None = None,
        local_device: bytes | None = None,
        config: EngineConfig | None = None,
        limiter: PeerLimiter | None = None,
    ) -> GroupEngine:
        """Join an existing group from its genesis bytes (verified: signature, cert,
        and the expected id when the caller knows it, e.g. from an invite token)."""
        stored = decode_stored(data)
        if group_id is not None and stored.event_id != group_id:
            raise GroupError("wrong-group", "genesis does not hash to the group id")
        event = stored.event
        if event.kind != "genesis" or event.cert is None:
            raise GroupError("bad-kind", "not a genesis event with a certificate")
        GroupLog._verify(event)
        engine = cls(
            stored, local_device=local_device, config=config or EngineConfig(), limiter=limiter
        )
        engine._log._check_cert(event, check_signature=True)
        return engine

    @classmethod
    def load(
        cls,
        events: Iterable[bytes],
        *,
        trusted: bool = True,
        now: int | None = None,
        in_store: bool = False,
        local_device: bytes | None = None,
        config: EngineConfig | None = None,
        limiter: PeerLimiter | None = None,
    ) -> GroupEngine:
        """Rebuild from stored event bytes, in any order. ``trusted`` skips signature
        and certificate checks for events this node already verified (the chain, links
        and Lamport rules are still checked); otherwise ``now`` is required.
        ``in_store``: the events are the node's stored ones, so their bytes are not
        kept in memory (sync serving and fork proofs read them from the store)."""
        if not trusted and now is None:
            raise LocalProtocolError("an untrusted load needs now")
        events = list(events)
        config = config or EngineConfig()
        if trusted:
            made: list[GroupEngine] = []

            def start(genesis: StoredEvent) -> GroupLog:
                made.append(cls(genesis, local_device=local_device, config=config,
                                limiter=limiter))  # fmt: skip
                return made[0]._log

            if add_in_store_order(
                events, start, max_early=config.log.max_pending, in_store=in_store
            ):
                return made[0]._loaded()
        # Verified events are held slim (see GroupEvent.slim): decoded so from the start.
        decoded = [decode_stored(data, slim=trusted) for data in events]
        genesis = [s for s in decoded if s.event.kind == "genesis"]
        if len(genesis) != 1:
            raise LocalProtocolError("a group's events hold exactly one genesis")
        if trusted:
            engine = cls(
                genesis[0],
                local_device=local_device,
                config=config,
                limiter=limiter,
            )
        else:
            engine = cls.from_genesis(genesis[0].data, local_device=local_device, config=config)
        decoded.sort(key=lambda s: order_key(s.event))  # parents sort before children
        for stored in decoded:
            if stored is not genesis[0]:
                engine._log.add(
                    stored, verified=trusted, now=None if trusted else now, in_store=in_store
                )
        return engine._loaded()

    @classmethod
    def loading(
        cls,
        *,
        local_device: bytes | None = None,
        config: EngineConfig | None = None,
        limiter: PeerLimiter | None = None,
    ) -> EngineLoad:
        """:meth:`load` of a node's stored events (trusted, ``in_store``) a page at a
        time: a page's bytes are freed before the next is read, so a start's peak is
        not every event's bytes at once (Python rarely gives such a peak back)."""
        config = config or EngineConfig()
        made: list[GroupEngine] = []

        def start(genesis: StoredEvent) -> GroupLog:
            made.append(cls(genesis, local_device=local_device, config=config, limiter=limiter))
            return made[0]._log

        load = StoreOrderLoad(start, max_early=config.log.max_pending, in_store=True)
        return EngineLoad(load, made)

    def _loaded(self) -> GroupEngine:
        self._note_revocations(self._log.ordered())
        self._reset_fold()
        self._ensure()
        self._before = self._membership
        self._known_devices = frozenset(d for d in self.member_devices() if d != self._local)
        return self

    # --- reading --------------------------------------------------------------------

    @property
    def descriptor(self) -> GroupDescriptor:
        return self._descriptor

    def event_bytes(self, event_id: bytes) -> bytes | None:
        """A held event's bytes if they are in memory (``None`` also for one the node
        has stored: read those from the store)."""
        return self._log.raw(event_id)

    def mark_stored(self, event_ids: Iterable[bytes]) -> None:
        """The node has stored these accepted events: their bytes leave memory."""
        self._log.mark_stored(event_ids)

    def provide_fork_bytes(self, event_id: bytes, data: bytes) -> ReceiveResult:
        """The stored bytes a :class:`ForkEvidenceNeeded` asked for: the fork's proof
        is made and the device frozen (its :class:`ForkDetected` is in the result)."""
        self._log.provide_fork_bytes(event_id, data)
        return self._finish(AddOutcome())

    def ordered_events(self) -> list[StoredEvent]:
        """Every accepted event in the total order (the node's storage order is free),
        with its bytes when they are in memory (see :meth:`event_bytes`)."""
        return [self._log.with_bytes(s) for s in self._log.ordered()]

    @property
    def fork_proofs(self) -> tuple[ForkProof, ...]:
        return self._log.fork_proofs

    @property
    def log(self) -> GroupLog:
        """Read access for the sync session (heads, chains)."""
        return self._log

    def frontier(self) -> SyncFrontier:
        heads = sorted(self._log.heads().items())
        return SyncFrontier(
            group=self.group_id,
            heads=tuple(Head(device=d, seq=s, hash=h) for d, (s, h) in heads),
        )

    def live_comments(self, media: bytes, start: int, end: int, *, now: int) -> list[LiveEntry]:
        """Live comments on ``media`` with ``start <= offset < end`` still in the window."""
        return self._live.query(media, start, end, now=now)

    def live_events(
        self, media: bytes, start: int, end: int, *, now: int, limit: int
    ) -> list[bytes]:
        """The exact bytes of the first ``limit`` of :meth:`live_comments` (to serve a
        late joiner's ``live.want``)."""
        return self._live.query_events(media, start, end, now=now, limit=limit)

    def statistics(self) -> dict[str, int]:
        return {
            "events": len(self._log),
            "pending": self._log.pending_count,
            "forked_devices": len(self._log.frozen),
            "live_comments": len(self._live),
        }

    # --- authoring ------------------------------------------------------------------

    def author(
        self, body: Struct, *, device: Device, now: int, plaintext: InnerEvent | None = None
    ) -> bytes:
        """Sign ``body`` as the next event of ``device`` and accept it locally.

        Chooses ``prev`` (our head), ``deps`` (the current tips of other devices, newest
        first, at most 32) and the Lamport time. For a ``sealed`` body, pass the
        ``plaintext`` so our own view shows it. Raises :class:`LocalProtocolError` for
        what the group would refuse structurally.
        """
        kind: str = body.KIND  # type: ignore[attr-defined]
        dev = device.public_key
        if kind == "live.comment":
            raise LocalProtocolError("use author_live for live comments")
        if self._descriptor.kind == "private" and kind in CONTENT_KINDS:
            raise LocalProtocolError("private groups carry content in sealed events")
        if self._descriptor.kind != "private" and kind in ("sealed", "skey.dist"):
            raise LocalProtocolError(f"{kind} exists only in private groups")
        if dev in self._log.frozen:
            raise LocalProtocolError("this device has forked and may no longer write")
        if (device.certificate.account_key, dev) in self._revoked_upto:
            raise PermissionDeniedError("this device was revoked by its account")
        data = self._sign(body, device=device, now=now, dependent=True)
        try:
            result = self._apply(lambda: self._log.add(decode_stored(data), verified=True, now=now))
        except GroupError as exc:
            raise LocalProtocolError(f"our own event was refused: {exc.reason}") from None
        if plaintext is not None:
            self.provide_plaintext(result.accepted[0].event_id, plaintext)
        self._author_effects += [e for e in result.effects if isinstance(e, _KEY_EFFECTS)]
        return data

    def take_author_effects(self) -> list[Effect]:
        """The effects of what we authored since the last call (a sender key others need)."""
        effects, self._author_effects = self._author_effects, []
        return effects

    def author_live(self, body: LiveComment, *, device: Device, now: int) -> bytes:
        """Sign a live comment (not a log entry: see :mod:`.group_live`) and index it."""
        if self._descriptor.kind != "live":
            raise LocalProtocolError("live comments exist only in live groups")
        data = self._sign(body, device=device, now=now, dependent=False)
        self._live.add(decode_stored(data).event, body, now=now, data=data)
        return data

    def _sign(self, body: Struct, *, device: Device, now: int, dependent: bool) -> bytes:
        dev = device.public_key
        head = self._log.head_of(dev)
        prev = None if head is None else self._log.get(head[1])
        parents = [] if prev is None else [prev.event]
        if dependent:
            tips = sorted(
                (t.event for t in self._log.tips() if t.event.author_device != dev),
                key=order_key,
                reverse=True,
            )
            parents += tips[:_MAX_DEPS]
            deps = tuple(t.event_id for t in tips[:_MAX_DEPS])
        else:
            deps = ()
        ts = max([now] + [p.ts - MAX_TS_SKEW_MS for p in parents])
        return sign_event(
            body,
            signing_key=SigningKey(device.signing_seed()),
            account=device.certificate.account_key,
            group=self.group_id,
            seq=1 if head is None else head[0] + 1,
            prev=None if head is None else head[1],
            deps=deps,
            lamport=1 + max((p.lamport for p in parents), default=0),
            now=ts,
            cert=device.certificate.encode() if head is None else None,
        )

    def provide_plaintext(self, event_id: bytes, inner: InnerEvent) -> None:
        """The decrypted content of a ``sealed`` event (the node decrypts with
        ``p2pchat_crypto.group``). Raises :class:`WireError` for a malformed inner event."""
        stored = self._log.get(event_id)
        if stored is None or stored.event.kind != "sealed":
            raise LocalProtocolError("no sealed event with that id")
        parsed = inner.parsed()
        self._plaintexts[event_id] = (inner.kind, parsed)
        self._invalidate(self._log.index_of(stored.event))

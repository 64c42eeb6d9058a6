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
from dataclasses import dataclass, field, replace
from typing import Any

from nacl.signing import SigningKey

from p2pchat.errors import LocalProtocolError, PermissionDeniedError, RateLimitedError, WireError
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
from .group_fold import Folding
from .group_live import LiveConfig, LiveEntry, LiveIndex
from .group_log import (
    MAX_TS_SKEW_MS,
    AddOutcome,
    ForkProof,
    GroupError,
    GroupLog,
    LogLimits,
    StoredEvent,
    add_in_store_order,
    decode_stored,
    first_recent,
    order_key,
)
from .group_state import Membership
from .limits import AuthorCeiling, PeerLimiter
from .sync_messages import Head, Run, SyncBatch, SyncFrontier

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


class GroupEngine(Folding):
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
        self._effective: set[bytes] = set()
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
        local_device: bytes | None = None,
        config: EngineConfig | None = None,
        limiter: PeerLimiter | None = None,
    ) -> GroupEngine:
        """Rebuild from stored event bytes, in any order. ``trusted`` skips signature
        and certificate checks for events this node already verified (the chain, links
        and Lamport rules are still checked); otherwise ``now`` is required."""
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

            if add_in_store_order(events, start, max_early=config.log.max_pending):
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
                engine._log.add(stored, verified=trusted, now=None if trusted else now)
        return engine._loaded()

    def _loaded(self) -> GroupEngine:
        self._note_revocations(self._log.ordered())
        self._reset_fold()
        self._ensure()
        self._before = self._membership
        self._known_devices = frozenset(d for d in self.member_devices() if d != self._local)
        return self

    def expect_history(self, now: int) -> None:
        """We are joining: for the ceiling's window, what a sync brings is the group's
        history, however recent (the invite we join by may follow an author's burst),
        taken at the sync limits alone; gossip is still charged."""
        self._history_until = now + self._ceiling.window_ms

    def _is_live(self, ts: int, now: int) -> bool:
        """Whether a synced event authored at ``ts`` is live traffic (charged)."""
        return now >= self._history_until and self._ceiling.is_recent(ts, now)

    # --- reading --------------------------------------------------------------------

    @property
    def descriptor(self) -> GroupDescriptor:
        return self._descriptor

    @property
    def state(self) -> Membership:
        self._ensure()
        return self._membership

    def event_bytes(self, event_id: bytes) -> bytes | None:
        stored = self._log.get(event_id)
        return None if stored is None else stored.data

    def ordered_events(self) -> list[StoredEvent]:
        """Every accepted event in the total order (the node's storage order is free)."""
        return list(self._log.ordered())

    def member_devices(self) -> dict[bytes, bytes]:
        """Devices (key -> account) of current members, neither forked nor revoked."""
        members = self.state.members
        frozen = self._log.frozen
        return {
            d: a
            for d, a in self._log.devices().items()
            if a in members and d not in frozen and (a, d) not in self._revoked_upto
        }

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

    # --- receiving ------------------------------------------------------------------

    def receive_live_backlog(self, data: bytes, *, now: int) -> ReceiveResult:
        """A live comment fetched from a member's window (``live.batch``): every check of
        :meth:`receive` except the author's rate on *our* clock, because a backlog
        arrives all at once by design. The caller bounds the request and paces each
        author on the comments' own timestamps
        (:class:`~p2pchat.protocol.live_messages.BacklogScreen`). A comment we already
        hold is skipped before its signature is checked."""
        stored = decode_stored(data)
        event = stored.event
        if event.group_id != self.group_id:
            raise GroupError("wrong-group", "event of another group")
        if event.kind != "live.comment":
            raise GroupError("bad-kind", "a live backlog carries live comments only")
        if event.event_id in self._live:
            return ReceiveResult()
        return self._receive_live(stored, now=now, paced=False)

    def receive(
        self, data: bytes, *, now: int, source: str | None = None, catch_up: bool = False
    ) -> ReceiveResult:
        """One event (e.g. from gossip). Decodes, rate-limits on ``source`` (or the
        claimed author device), then verifies and applies. Raises :class:`WireError`,
        :class:`GroupError` or :class:`RateLimitedError`; a refused event is not stored
        (the one exception to "nothing changes": a validly signed event that proves a
        fork freezes its device even if a later check refuses it)."""
        stored = decode_stored(data)
        event = stored.event
        if event.group_id != self.group_id:
            raise GroupError("wrong-group", "event of another group")
        if event.kind == "live.comment":
            return self._receive_live(stored, now=now)
        self._rate_limit(source or event.author_device.hex(), now)
        author = self._log.account_of(event.author_device) or event.author_account
        ceiling = self._ceiling
        charged = int(
            self._log.id_at(event.author_device, event.seq) != event.event_id
            and (not catch_up or ceiling.is_behind(author, now) or self._is_live(event.ts, now))
        )
        if charged and not self._ceiling.grant(author, now, 1):
            return ReceiveResult(deferred=1)
        try:
            return self._apply(lambda: self._log.add(stored, verified=False, now=now))
        except (GroupError, WireError):
            self._ceiling.refund(author, charged)
            raise

    def apply_run(
        self, run: Run, *, now: int, source: str | None = None, catch_up: bool = False
    ) -> ReceiveResult:
        """A sync or gossip run: one signature check for the whole run."""
        if len(run.events) == 1:
            if decode_stored(run.events[0]).event.author_device != run.device:
                raise WireError("broken-chain", "event of another device in the run")
            return self.receive(run.events[0], now=now, source=source, catch_up=catch_up)
        self._rate_limit(source or run.device.hex(), now)
        first = decode_stored(run.events[0]).event
        author = self._log.account_of(run.device) or first.author_account
        if (
            first.seq > 1
            and self._log.id_at(run.device, first.seq - 1) is None
            and self._ceiling.is_behind(author, now)
        ):
            # It continues events we deferred: not an error, the gap is ours.
            return ReceiveResult(deferred=len(run.events))
        head = self._log.head_of(run.device)
        held = 0 if head is None else max(0, min(len(run.events), head[0] - first.seq + 1))
        # Live events are charged whichever way they come: the first copies of a flood
        # may arrive by a sync that began before its first gossip. Sync (``catch_up``)
        # takes history (authored before the ceiling's recent window) at the sync limits
        # alone, so a joiner is not slowed, unless the author is behind (we deferred
        # their live events: the rest of a flood is paced whatever its timestamps).
        history = 0
        if catch_up and not self._ceiling.is_behind(author, now):
            history = first_recent(run.events[held:], lambda ts: self._is_live(ts, now))
        live = len(run.events) - held - history
        granted = self._ceiling.grant(author, now, live) if live else 0
        keep = held + history + granted
        deferred = len(run.events) - keep
        if keep == 0:
            return ReceiveResult(deferred=deferred)
        part = run if not deferred else Run(device=run.device, events=run.events[:keep])
        try:
            result = self._apply(lambda: self._log.add_run(part, now=now))
        except (GroupError, WireError):
            self._ceiling.refund(author, granted)
            raise
        return replace(result, deferred=deferred) if deferred else result

    def apply_batch(
        self, batch: SyncBatch, *, now: int, source: str | None = None
    ) -> ReceiveResult:
        """Every run of a batch (e.g. a gossip message). A refused run does not stop
        the others; the first error is raised after all were tried, so use
        :meth:`apply_runs` when the accepted events of a partly bad batch matter."""
        result, errors = self.apply_runs(batch, now=now, source=source)
        if errors:
            raise errors[0]
        return result

    def apply_runs(
        self, batch: SyncBatch, *, now: int, source: str | None = None, catch_up: bool = False
    ) -> tuple[ReceiveResult, list[WireError | GroupError | RateLimitedError]]:
        """Like :meth:`apply_batch` but returns the per-run errors instead of raising."""
        if batch.group != self.group_id:
            raise GroupError("wrong-group", "batch of another group")
        accepted: list[StoredEvent] = []
        effects: list[Effect] = []
        buffered = deferred = 0
        errors: list[WireError | GroupError | RateLimitedError] = []
        for run in batch.runs:
            try:
                result = self.apply_run(run, now=now, source=source, catch_up=catch_up)
            except (WireError, GroupError, RateLimitedError) as exc:
                errors.append(exc)
                continue
            accepted += result.accepted
            effects += result.effects
            buffered += result.buffered
            deferred += result.deferred
        return ReceiveResult(tuple(accepted), tuple(effects), buffered, deferred), errors

    def receive_fork_proof(self, proof: ForkProof) -> ReceiveResult:
        """A gossiped fork proof: verify it (two signatures) and freeze the device."""
        self._log.add_fork_proof(proof)
        return self._finish(AddOutcome())

    def provide_plaintext(self, event_id: bytes, inner: InnerEvent) -> None:
        """The decrypted content of a ``sealed`` event (the node decrypts with
        ``p2pchat_crypto.group``). Raises :class:`WireError` for a malformed inner event."""
        stored = self._log.get(event_id)
        if stored is None or stored.event.kind != "sealed":
            raise LocalProtocolError("no sealed event with that id")
        parsed = inner.parsed()
        self._plaintexts[event_id] = (inner.kind, parsed)
        self._invalidate(self._log.index_of(stored.event))

    def _receive_live(self, stored: StoredEvent, *, now: int, paced: bool = True) -> ReceiveResult:
        event = stored.event
        body = event.parsed
        if self._descriptor.kind != "live" or not isinstance(body, LiveComment):
            raise GroupError("bad-kind", "live comments exist only in live groups")
        if self._log.account_of(event.author_device) != event.author_account:
            raise GroupError("unknown-device", "comment by a device with no log entry")
        if paced and not self._live.allow(event.author_device, now=now):
            raise RateLimitedError("live comments from this device are too frequent")
        if event.ts > now + MAX_TS_SKEW_MS:
            raise GroupError("from-future", "comment timestamp is ahead of our clock")
        if not self.state.is_member(event.author_account):
            raise GroupError("not-member", "live comment by a non-member")
        GroupLog._verify(event)
        if not self._live.add(event, body, now=now, data=stored.data):
            return ReceiveResult()
        entry = LiveEntry(body.offset, event.event_id, event.author_account, event.ts,
                          body.text, body.color)  # fmt: skip
        return ReceiveResult(effects=(LiveCommentReceived(entry),))

    def _rate_limit(self, key: str, now: int) -> None:
        if self._limiter is not None and not self._limiter.allow(key, now):
            raise RateLimitedError("rate limit exceeded")

    def _apply(self, step: Any) -> ReceiveResult:
        try:
            outcome: AddOutcome = step()
        except (GroupError, WireError):
            # A run may have been accepted in part, or a fork proven before a later check
            # failed: rewind the fold, and keep what the next call must report.
            self._unreported_forks += self._log.take_new_forks()
            if self._unreported_forks:
                self._reset_fold()
            self._invalidate(self._log.take_min_insert())
            raise
        return self._finish(outcome)

    # --- the fold -------------------------------------------------------------------

    def _finish(self, outcome: AddOutcome) -> ReceiveResult:
        forks, self._unreported_forks = self._unreported_forks + self._log.take_new_forks(), []
        if self._note_revocations(outcome.accepted) or forks:
            self._reset_fold()
        self._invalidate(self._log.take_min_insert())
        before = self._before
        after = self.state
        self._before = after
        effects: list[Effect] = [ForkDetected(device, seq, proof) for device, seq, proof in forks]
        effects += self._membership_effects(before, after)
        if self._descriptor.kind == "private":
            effects += [
                SealedReceived(s.event_id) for s in outcome.accepted if s.event.kind == "sealed"
            ]
        return ReceiveResult(tuple(outcome.accepted), tuple(effects), outcome.buffered)

    def _membership_effects(self, before: Membership, after: Membership) -> list[Effect]:
        effects: list[Effect] = []
        for account, role in after.members.items():
            old = before.members.get(account)
            if old is None:
                effects.append(MemberJoined(account, role))
            elif old != role:
                effects.append(RoleChanged(account, role))
        for account in before.members:
            if account not in after.members:
                effects.append(MemberLeft(account, banned=account in after.banned))
        if self._descriptor.kind != "private" or self._local is None:
            return effects
        local_account = self._log.account_of(self._local)
        if local_account is None or local_account not in after.members:
            return effects
        devices = self.member_devices()
        recipients = tuple(sorted(d for d in devices if d != self._local))
        if after.epoch != before.epoch:
            effects.append(NewEpochNeeded(after.epoch, recipients))
        else:
            new = tuple(d for d in recipients if d not in self._known_devices)
            if new:
                effects.append(SenderKeyNeeded(after.epoch, new))
        self._known_devices = frozenset(recipients)
        return effects

"""Receiving into a group engine: events, runs, batches and fork proofs, and the
effects they have (a base of :class:`~.group_engine.GroupEngine`, which owns the state).

Every way in decodes, rate-limits (per source, and the author ceiling: what is over it
is *deferred* to a later sync, not stored), hands the events to the
:class:`~.group_log.GroupLog`, and computes the effects by comparing the membership
before and after the call, so they are right whichever path (incremental or replay)
produced the new state.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from p2pchat.errors import RateLimitedError, WireError

from .group_effects import (
    Effect,
    ForkDetected,
    ForkEvidenceNeeded,
    LiveCommentReceived,
    MemberJoined,
    MemberLeft,
    NewEpochNeeded,
    ReceiveResult,
    RoleChanged,
    SealedReceived,
    SenderKeyNeeded,
)
from .group_events import GroupDescriptor, LiveComment
from .group_fold import Folding
from .group_live import LiveEntry, LiveIndex
from .group_log import (
    MAX_TS_SKEW_MS,
    AddOutcome,
    ForkProof,
    GroupError,
    GroupLog,
    StoredEvent,
    decode_stored,
    first_recent,
)
from .group_state import Membership
from .limits import AuthorCeiling, PeerLimiter
from .sync_messages import Run, SyncBatch

__all__ = ["Receiving"]


class Receiving(Folding):
    """The receiving side of :class:`~.group_engine.GroupEngine` (see the module
    docstring)."""

    _descriptor: GroupDescriptor
    _log: GroupLog
    _limiter: PeerLimiter | None
    _ceiling: AuthorCeiling
    _history_until: int
    _local: bytes | None
    _live: LiveIndex
    _known_devices: frozenset[bytes]
    _unreported_forks: list[tuple[bytes, int, ForkProof]]
    _before: Membership

    def expect_history(self, now: int) -> None:
        """We are joining: for the ceiling's window, what a sync brings is the group's
        history, however recent (the invite we join by may follow an author's burst),
        taken at the sync limits alone; gossip is still charged."""
        self._history_until = now + self._ceiling.window_ms

    def _is_live(self, ts: int, now: int) -> bool:
        """Whether a synced event authored at ``ts`` is live traffic (charged)."""
        return now >= self._history_until and self._ceiling.is_recent(ts, now)

    def member_devices(self) -> dict[bytes, bytes]:
        """Devices (key -> account) of current members, neither forked nor revoked."""
        members = self.state.members
        frozen = self._log.frozen
        return {
            d: a
            for d, a in self._log.devices().items()
            if a in members and d not in frozen and (a, d) not in self._revoked_upto
        }

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
        effects += [ForkEvidenceNeeded(event_id) for event_id in self._log.take_proof_wanted()]
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

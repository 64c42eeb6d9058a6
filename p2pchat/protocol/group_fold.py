"""The fold of a group engine: accepted events, in their total order, into state.

:class:`Folding` is a base of :class:`~.group_engine.GroupEngine` (which owns the
state). It replays the accepted events in the order ``(lt, event id)`` through
:class:`~.group_state.MembershipFold` and :class:`~.group_content.ContentFold`: events
appended at the end are folded incrementally; an event that sorts into the middle
rewinds the fold to the newest checkpoint before it (or to the start), which is what
guarantees that every replica computes the same state from the same set of events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from p2pchat.errors import WireError
from p2pchat_crypto.kdf import blake2b

from .group_content import CONTENT_KINDS, ContentFold, EventRef, GroupView, Message
from .group_events import DeviceRevoke, GroupDescriptor, GroupEvent
from .group_log import GroupLog, StoredEvent
from .group_state import MEMBERSHIP_KINDS, Membership, MembershipFold

__all__ = ["Folding"]

#: Fold checkpoints: one every this many events near the end of the order, two kept.
_CHECKPOINT_EVERY = 256
_CHECKPOINTS_KEPT = 2


@dataclass(frozen=True, slots=True)
class _Checkpoint:
    """The fold state after the first ``index`` events of the total order."""

    index: int
    mfold: MembershipFold
    cfold: ContentFold
    history: bytes


class Folding:
    """The fold of :class:`~.group_engine.GroupEngine` (see the module docstring)."""

    _descriptor: GroupDescriptor
    _owner: bytes
    _log: GroupLog
    _plaintexts: dict[bytes, tuple[str, Any]]
    _mfold: MembershipFold
    _cfold: ContentFold
    _folded: int
    #: Folded events that had no effect (few: an entry per *effective* event was ~44 B
    #: of every event held); every other folded event is effective.
    _void: set[bytes]
    _history: bytes
    _view: GroupView | None
    _checkpoints: list[_Checkpoint]
    _membership: Membership
    #: (account, revoked device) -> the device's last seq that stays valid: from every
    #: valid ``device.revoke`` of the log, whatever its place in the order (the engine's).
    #: Keyed by account too: a revocation only ever binds devices of its signer.
    _revoked_upto: dict[tuple[bytes, bytes], int]

    @property
    def group_id(self) -> bytes:
        return self._log.group_id

    # --- reading the fold (what a node shows) -------------------------------------

    @property
    def state(self) -> Membership:
        self._ensure()
        return self._membership

    @property
    def view(self) -> GroupView:
        self._ensure()
        if self._view is None:
            self._view = self._cfold.view()
        return self._view

    def history(self, limit: int, before: bytes | None = None) -> list[Message]:
        """One page of visible messages, oldest first: the ``limit`` newest before
        ``before`` (a message id; ignored if it is not one). O(page) memory, unlike
        :attr:`view`, which holds every message of the group."""
        self._ensure()
        return self._cfold.page(limit, before)

    def tallies(self) -> GroupView:
        """Poll tallies and group-buy states, without the messages (``messages`` is
        empty: page them with :meth:`history`); not cached."""
        self._ensure()
        return self._cfold.view(messages=False)

    def position(self, event_id: bytes) -> int | None:
        """An accepted event's position in the total order (``None`` if not held)."""
        stored = self._log.get(event_id)
        return None if stored is None else self._log.index_of(stored.event)

    def notices(self) -> list[tuple[int, StoredEvent]]:
        """Removals and bans (what members are shown among the messages), each with its
        position in the total order, in that order (from an index, not a scan)."""
        held = (self._log.get(event_id) for event_id in self._log.of_kinds())
        found = [(self._log.index_of(s.event), s) for s in held if s is not None]
        return sorted(found, key=lambda item: item[0])

    def message(self, event_id: bytes) -> Message | None:
        """One visible message, current (edits, reactions, deletion) — without rebuilding
        the whole view, which costs O(history) after every change."""
        self._ensure()
        return self._cfold.message(event_id)

    def history_hash(self) -> bytes:
        """A digest of the ids of every *effective* event in the total order: two
        replicas with the same value show the same history."""
        self._ensure()
        return self._history

    def is_effective(self, event_id: bytes) -> bool:
        self._ensure()  # every held event is folded now
        return event_id in self._log and event_id not in self._void

    # --- revoked devices (devices.md section 7) ---------------------------------

    def is_revoked(self, account: bytes, device: bytes) -> bool:
        """Whether a valid ``device.revoke`` of this log revoked ``device`` of ``account``."""
        return (account, device) in self._revoked_upto

    def revocation_cut(self, device: bytes) -> int:
        """The ``upto`` of a revocation of ``device`` authored now: its head in our log."""
        head = self._log.head_of(device)
        return 0 if head is None else head[0]

    def _note_revocations(self, events: Iterable[StoredEvent]) -> bool:
        """Index the valid revocations among ``events``; return whether any changed the
        index (the fold must then start over: events before it in the order may be void)."""
        changed = False
        for stored in events:
            body = stored.event.parsed
            if not isinstance(body, DeviceRevoke):
                continue
            rev = body.revocation
            try:
                rev.verify()
            except WireError:
                continue
            key = (rev.account, rev.device)
            held = self._revoked_upto.get(key)
            if held is None or body.upto < held:
                self._revoked_upto[key] = body.upto
                changed = True
        return changed

    # --- folding ---------------------------------------------------------------

    def _reset_fold(self) -> None:
        rules = self._descriptor.rules
        self._mfold = MembershipFold.start(self._descriptor, self._owner)
        self._cfold = ContentFold(slow_ms=rules.slow * 1000, post_role=rules.post)
        self._folded = 0
        self._void = set()
        self._history = b"\x00" * 32
        self._view = None
        self._checkpoints = []

    def _invalidate(self, index: int | None) -> None:
        """Events at ``index`` and after changed: rewind the fold to the newest checkpoint
        at or before it (or to the start). Concurrent events sort near the end of the
        order, so a rewind usually replays a few hundred events, not the history."""
        if index is None or index >= self._folded:
            return
        while self._checkpoints and self._checkpoints[-1].index > index:
            self._checkpoints.pop()
        if not self._checkpoints:
            self._reset_fold()
            return
        checkpoint = self._checkpoints[-1]
        for stored in self._log.ordered(checkpoint.index):
            self._void.discard(stored.event_id)
        self._mfold = checkpoint.mfold.clone()
        self._cfold = checkpoint.cfold.clone()
        self._history = checkpoint.history
        self._folded = checkpoint.index
        self._view = None

    def _ensure(self) -> None:
        total = len(self._log)
        if self._folded == total:
            return
        frozen = self._log.frozen
        position = self._folded
        for stored in self._log.ordered(self._folded):
            event = stored.event
            fork_seq = frozen.get(event.author_device)
            if (fork_seq is None or event.seq < fork_seq) and self._fold_event(event):
                self._history = blake2b(self._history + event.event_id, person=b"p2pchat-hist")
            else:
                self._void.add(event.event_id)
            position += 1
            if position % _CHECKPOINT_EVERY == 0 and position >= total - 2 * _CHECKPOINT_EVERY:
                self._checkpoints.append(
                    _Checkpoint(position, self._mfold.clone(), self._cfold.clone(), self._history)
                )
                del self._checkpoints[:-_CHECKPOINTS_KEPT]
        self._folded = total
        self._membership = self._mfold.snapshot()
        self._view = None

    def _fold_event(self, event: GroupEvent) -> bool:
        kind = event.kind
        if kind == "genesis":
            return event.event_id == self.group_id
        upto = self._revoked_upto.get((event.author_account, event.author_device))
        if upto is not None and event.seq > upto:
            return False  # written by a revoked device after its revocation's cut
        if kind == "device.revoke":
            body = event.parsed
            assert isinstance(body, DeviceRevoke)
            rev = body.revocation
            if (rev.account, rev.device) not in self._revoked_upto:
                return False  # its signature did not verify
        if kind in MEMBERSHIP_KINDS:
            return self._mfold.apply(event, event.parsed)
        role = self._mfold.role_of(event.author_account)
        if role is None:
            return False
        ref = EventRef(event.event_id, event.author_account, event.author_device, event.ts)
        if kind == "sealed":
            opened = self._plaintexts.get(event.event_id)
            if opened is None:
                return self._cfold.placeholder(ref, role)
            inner_kind, parsed = opened
            return inner_kind in CONTENT_KINDS and self._cfold.apply(ref, inner_kind, parsed, role)
        if kind in CONTENT_KINDS:
            return self._cfold.apply(ref, kind, event.parsed, role)
        return True  # skey.dist, or a kind this version does not interpret

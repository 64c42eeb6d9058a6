"""The values of :mod:`.group_log`: its error, limits, held events, order and fork
proofs (kept apart so the log's module holds the log alone; import them from either)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from p2pchat.errors import LocalProtocolError, ProtocolError, WireError

from .codec import Bytes, Struct, wire
from .group_events import MAX_EVENT, GroupEvent, decode_event

__all__ = ["GroupError", "LogLimits", "StoredEvent", "order_key", "ForkProof", "AddOutcome"]


class GroupError(ProtocolError):
    """A group event or sync message refused by the engine (the peer's fault).

    ``reason`` is a stable slug (``"broken-chain"``, ``"bad-cert"``, ``"buffer-full"``…)
    listed in ``protocol-spec/groups.md``; the message never contains key material.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True, slots=True)
class LogLimits:
    """Bounds on what a hostile peer can make us hold (keyword-only, all in events/bytes)."""

    max_pending: int = 4096
    max_pending_bytes: int = 16 * 1024 * 1024
    #: Events kept per forked device off its canonical chain (evidence, and so that
    #: other authors' events that name them in ``deps`` still apply).
    max_fork_events: int = 256


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An accepted event and its exact bytes (what the node stores and serves).

    As the log holds it, ``raw`` is ``None`` once the node has stored the event (see
    :meth:`GroupLog.mark_stored`): its bytes are then read from the store, not memory."""

    event: GroupEvent
    raw: bytes | None

    @property
    def event_id(self) -> bytes:
        return self.event.event_id

    @property
    def data(self) -> bytes:
        if self.raw is None:
            raise LocalProtocolError("this event's bytes are in the node's store, not held")
        return self.raw


def order_key(event: GroupEvent) -> tuple[int, bytes]:
    """The total order of wire.md §8: Lamport time, then event id bytewise."""
    return (event.lamport, event.event_id)


@dataclass(frozen=True, kw_only=True)
class ForkProof(Struct):
    """Two different events signed by one device for the same sequence number.

    Self-certifying: anyone can check it with two signature verifications, so it is
    gossiped and every node that sees it freezes the device at that sequence number.
    """

    KIND: ClassVar[str] = "group.fork"
    first: bytes = wire("a", Bytes(low=1, high=MAX_EVENT), "one event, exact bytes")
    second: bytes = wire("b", Bytes(low=1, high=MAX_EVENT), "the other event, exact bytes")

    def check(self, *, group: bytes) -> tuple[bytes, int]:  # type: ignore[override]
        """Verify the proof; return ``(device, seq)``. Raises :class:`GroupError`."""
        try:
            a, b = decode_event(self.first), decode_event(self.second)
        except WireError as exc:
            raise GroupError("bad-fork-proof", exc.reason) from None
        if a.group_id != group or b.group_id != group:
            raise GroupError("bad-fork-proof", "events of another group")
        if a.author_device != b.author_device or a.seq != b.seq or a.event_id == b.event_id:
            raise GroupError("bad-fork-proof", "not two events of one device and sequence")
        try:
            a.verify()
            b.verify()
        except WireError:
            raise GroupError("bad-fork-proof", "signature does not verify") from None
        return a.author_device, a.seq


@dataclass(slots=True)
class AddOutcome:
    """What one call changed: events newly accepted (in acceptance order), and how many
    were buffered waiting for their ancestors. (New forks: :meth:`GroupLog.take_new_forks`.)"""

    accepted: list[StoredEvent] = field(default_factory=list)
    buffered: int = 0

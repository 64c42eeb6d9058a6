"""Anti-entropy sync payloads (envelope kinds on ``/p2pchat/sync/1.0.0``).

The exchange: each side sends ``sync.frontier`` (its head per author device), then
``sync.want`` for the ranges it lacks; the other side answers with ``sync.batch`` frames
and a final ``sync.end``. A batch carries *runs*: contiguous, hash-chained ranges of one
author device's log, each checked by :func:`authenticate_run` with one signature
verification per run (protocol-spec/wire.md, "Authenticating a run").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from p2pchat.errors import WireError

from .codec import MAX_UINT, Bool, Bytes, ListOf, Nested, Struct, UInt, wire
from .group_events import MAX_EVENT, GroupEvent, decode_event

__all__ = [
    "Head",
    "SyncFrontier",
    "WantRange",
    "SyncWant",
    "Run",
    "SyncBatch",
    "SyncEnd",
    "SYNC_KINDS",
    "authenticate_run",
]

_KEY = Bytes(32)
_SEQ = UInt(1, MAX_UINT)


@dataclass(frozen=True, kw_only=True)
class Head(Struct):
    device: bytes = wire("d", _KEY, "author device key")
    seq: int = wire("seq", _SEQ, "highest contiguous sequence number held")
    hash: bytes = wire("h", _KEY, "event id of that event")


@dataclass(frozen=True, kw_only=True)
class SyncFrontier(Struct):
    """The version vector of one group: the head of every author device the sender holds."""

    KIND: ClassVar[str] = "sync.frontier"
    group: bytes = wire("g", _KEY, "group id")
    heads: tuple[Head, ...] = wire("heads", ListOf(Nested(Head), 0, 4096), "one per device")


@dataclass(frozen=True, kw_only=True)
class WantRange(Struct):
    device: bytes = wire("d", _KEY, "author device key")
    first: int = wire("from", _SEQ, "first sequence number wanted")
    last: int = wire("to", _SEQ, "last sequence number wanted (inclusive)")

    def __post_init__(self) -> None:
        if self.first > self.last:
            raise ValueError("from > to")


@dataclass(frozen=True, kw_only=True)
class SyncWant(Struct):
    KIND: ClassVar[str] = "sync.want"
    group: bytes = wire("g", _KEY, "group id")
    ranges: tuple[WantRange, ...] = wire("ranges", ListOf(Nested(WantRange), 1, 1024), "wanted")


@dataclass(frozen=True, kw_only=True)
class Run(Struct):
    """Consecutive events of one author device, oldest first, as their exact bytes."""

    device: bytes = wire("d", _KEY, "author device key of every event in the run")
    events: tuple[bytes, ...] = wire(
        "evs", ListOf(Bytes(low=1, high=MAX_EVENT), 1, 1024), "encoded group events"
    )


@dataclass(frozen=True, kw_only=True)
class SyncBatch(Struct):
    KIND: ClassVar[str] = "sync.batch"
    group: bytes = wire("g", _KEY, "group id")
    runs: tuple[Run, ...] = wire("runs", ListOf(Nested(Run), 1, 256), "hash-chained runs")


@dataclass(frozen=True, kw_only=True)
class SyncEnd(Struct):
    """The sender has sent every batch it will send for this exchange."""

    KIND: ClassVar[str] = "sync.end"
    group: bytes = wire("g", _KEY, "group id")
    more: bool = wire("more", Bool(), "true if the sender stopped early (ask again)")


SYNC_KINDS: tuple[type[Struct], ...] = (SyncFrontier, SyncWant, SyncBatch, SyncEnd)


def authenticate_run(
    run: Run, *, group: bytes, after: tuple[int, bytes] | None = None
) -> tuple[GroupEvent, ...]:
    """Decode and authenticate a run with hash links and ONE signature (its last event's).

    ``after`` is the receiver's current head ``(seq, event id)`` for this device; the run
    must continue it (or start at sequence 1 when ``after`` is ``None``). Raises
    :class:`WireError` (``"broken-chain"``, ``"bad-signature"``…) and returns nothing
    partial. The device certificate check (device key belongs to ``author_account``) is
    the caller's, as for a single event.
    """
    events = tuple(decode_event(raw) for raw in run.events)
    expect_seq, expect_prev = (after[0] + 1, after[1]) if after else (1, None)
    lamport = 0
    for event in events:
        if event.group_id != group:
            raise WireError("wrong-group", "event of another group in the run")
        if event.author_device != run.device:
            raise WireError("broken-chain", "event of another device in the run")
        if event.seq != expect_seq or event.prev != expect_prev:
            raise WireError("broken-chain", f"event {event.seq} does not continue the chain")
        if event.author_account != events[0].author_account:
            raise WireError("broken-chain", "author account changes inside a run")
        if event.lamport <= lamport:
            raise WireError("broken-chain", "Lamport time does not increase")
        expect_seq, expect_prev, lamport = event.seq + 1, event.event_id, event.lamport
    events[-1].verify()
    return events

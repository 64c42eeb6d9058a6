"""Typed, immutable events a node reports to the app (``node.events()``), and their bus.

Events are *notifications*; the store is the source of truth. Each subscriber gets its own
bounded queue (``capacity`` events). Overflow policy: when a subscriber's queue is full,
new events for it are dropped and counted, and as soon as it has room again it first
receives one :class:`EventsDropped` with that count, so an app always knows it missed
something and can re-read ``node.history()``. A slow subscriber never slows the node or
other subscribers.

Every event has ``type`` (a stable dotted name, also used by the RPC) and converts to a
plain dict with :func:`event_to_dict` (bytes as hex) for the RPC and ``--json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import trio

from .errors import ClosedError
from .vocabulary import add_canonical

__all__ = [
    "Event",
    "MessageReceived",
    "DeliveryChanged",
    "ContactRequestReceived",
    "ContactChanged",
    "PeerConnected",
    "PeerDisconnected",
    "PeerNearby",
    "ReachabilityChanged",
    "GroupMessage",
    "GroupChanged",
    "GroupLiveComment",
    "DeviceLinkRequest",
    "DeviceLinked",
    "DeviceRevoked",
    "DeviceHistoryRequest",
    "DeviceHistoryProgress",
    "FileProgress",
    "EventsDropped",
    "EventBus",
    "EventStream",
    "event_to_dict",
]


@dataclass(frozen=True, kw_only=True)
class Event:
    type: ClassVar[str] = "event"


@dataclass(frozen=True, kw_only=True)
class MessageReceived(Event):
    """A direct message was decrypted, stored and acknowledged."""

    type: ClassVar[str] = "dm.received"
    conversation_id: str
    message_id: bytes
    sender: bytes
    seq: int
    content_type: str
    text: str
    sent_at: int
    received_at: int
    #: True when the sender is not an accepted contact (the message sits in "requests").
    is_request: bool = False

    @property
    def author(self) -> bytes:
        """The canonical name of ``sender`` (:mod:`p2pchat.vocabulary`)."""
        return self.sender


@dataclass(frozen=True, kw_only=True)
class DeliveryChanged(Event):
    """An outgoing message moved to ``queued``, ``sent``, ``delivered`` or ``failed``."""

    type: ClassVar[str] = "dm.delivery"
    conversation_id: str
    message_id: bytes
    state: str
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class ContactRequestReceived(Event):
    """A stranger asked to talk; nothing is shown as a conversation until accepted."""

    type: ClassVar[str] = "contact.request"
    account: bytes
    fingerprint: str
    name: str | None = None
    note: str | None = None


@dataclass(frozen=True, kw_only=True)
class ContactChanged(Event):
    type: ClassVar[str] = "contact.changed"
    account: bytes
    state: str


@dataclass(frozen=True, kw_only=True)
class PeerConnected(Event):
    type: ClassVar[str] = "peer.connected"
    peer_id: str


@dataclass(frozen=True, kw_only=True)
class PeerDisconnected(Event):
    type: ClassVar[str] = "peer.disconnected"
    peer_id: str


@dataclass(frozen=True, kw_only=True)
class ReachabilityChanged(Event):
    """Whether others can dial this node changed (``public``, ``private``, ``unknown``),
    or the relayed addresses it advertises did (a node behind NAT is reached there)."""

    type: ClassVar[str] = "node.reachability"
    reachability: str
    relayed_addrs: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class PeerNearby(Event):
    """A node on the LAN announced itself (mDNS). Never auto-added as a contact."""

    type: ClassVar[str] = "peer.nearby"
    peer_id: str
    addrs: tuple[str, ...] = ()
    #: The display name it announced on the LAN (unverified), if any.
    name: str | None = None


@dataclass(frozen=True, kw_only=True)
class GroupMessage(Event):
    """A group content event (post, reply, reaction, poll, ...) was accepted."""

    type: ClassVar[str] = "group.message"
    group_id: bytes
    event_id: bytes
    author: bytes
    kind: str
    #: The text shown for it ("" for kinds without text; a reaction's emoji). A private
    #: group's sealed event is announced once, when it has been decrypted.
    text: str
    ts: int
    #: The event a reaction refers to (empty otherwise); ``on``: added, not taken back.
    target: bytes = b""
    on: bool = True

    @property
    def sent_at(self) -> int:
        """The canonical name of ``ts`` (:mod:`p2pchat.vocabulary`)."""
        return self.ts


@dataclass(frozen=True, kw_only=True)
class GroupChanged(Event):
    """Membership changed (``joined``, ``left``, ``banned``, ``role``) or a device forked."""

    type: ClassVar[str] = "group.changed"
    group_id: bytes
    change: str
    account: bytes
    role: str | None = None
    device: bytes = b""


@dataclass(frozen=True, kw_only=True)
class GroupLiveComment(Event):
    """A live (watch-together) comment at ``offset`` ms of the media being watched."""

    type: ClassVar[str] = "group.live"
    group_id: bytes
    event_id: bytes
    author: bytes
    offset: int
    text: str


@dataclass(frozen=True, kw_only=True)
class DeviceLinkRequest(Event):
    """A new device used our link code: compare ``confirm`` with the one it shows, then
    accept or refuse (``devices.confirm``)."""

    type: ClassVar[str] = "device.link_request"
    device: bytes
    name: str
    confirm: str


@dataclass(frozen=True, kw_only=True)
class DeviceLinked(Event):
    """A device joined our account (``refused``: the link was refused or timed out)."""

    type: ClassVar[str] = "device.linked"
    device: bytes
    name: str
    refused: bool = False


@dataclass(frozen=True, kw_only=True)
class DeviceRevoked(Event):
    """A device of our account was revoked (``this_device``: it is this one)."""

    type: ClassVar[str] = "device.revoked"
    device: bytes
    this_device: bool = False


@dataclass(frozen=True, kw_only=True)
class DeviceHistoryRequest(Event):
    """A device of ours asks for our direct-message history since ``since`` (ms, 0: all),
    at most ``max`` messages (``resume``: continuing an interrupted sync): send it or
    refuse (``devices.history_confirm``)."""

    type: ClassVar[str] = "device.history_request"
    device: bytes
    since: int
    max: int
    resume: bool = False


@dataclass(frozen=True, kw_only=True)
class DeviceHistoryProgress(Event):
    """History arriving from ``device``: ``received`` of ``total`` messages; ``done`` at
    the end; ``error`` when it stopped (resume by asking again)."""

    type: ClassVar[str] = "device.history_progress"
    device: bytes
    received: int
    total: int
    done: bool = False
    error: str = ""


@dataclass(frozen=True, kw_only=True)
class FileProgress(Event):
    """An attachment is being sealed (``up``) or fetched (``down``): ``done`` of ``total``
    bytes; ``state`` is ``running``, ``done`` or ``failed`` (with ``reason``). At most a
    few per second per file; ``sources``: holders serving it now (downloads). While a
    file is being sealed its id is not known yet: ``blob_id`` is empty, ``name`` says
    which file it is. ``mailbox``: a file of a DM left at the recipient's mailbox is
    held there (``done``) or was refused (``failed``, ``reason`` says why)."""

    type: ClassVar[str] = "file.progress"
    blob_id: bytes
    direction: str
    done: int
    total: int
    state: str = "running"
    reason: str = ""
    sources: int = 0
    name: str = ""


@dataclass(frozen=True, kw_only=True)
class EventsDropped(Event):
    """This subscriber fell behind and ``count`` events were dropped for it."""

    type: ClassVar[str] = "events.dropped"
    count: int


def event_to_dict(event: Event) -> dict[str, Any]:
    """A plain, JSON/msgpack-friendly dict: ``{"type": ..., field: value}``, bytes as hex;
    a field with an older name also under its canonical one (:mod:`p2pchat.vocabulary`)."""
    out: dict[str, Any] = {"type": event.type}
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        if isinstance(value, bytes):
            value = value.hex()
        elif isinstance(value, tuple):
            value = list(value)
        out[field.name] = value
    add_canonical(out)
    return out


class EventStream:
    """One subscription: ``async with node.events() as stream: async for event in stream``.

    Events are captured from ``__aenter__`` on, so nothing published after it is missed.
    """

    def __init__(self, bus: EventBus, capacity: int) -> None:
        self._bus = bus
        self._send, self._receive = trio.open_memory_channel[Event](capacity)
        self._dropped = 0

    def _offer(self, event: Event) -> None:
        if self._dropped:
            try:
                self._send.send_nowait(EventsDropped(count=self._dropped))
            except trio.WouldBlock:
                self._dropped += 1
                return
            self._dropped = 0
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self._dropped += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._bus._discard(self)

    async def __aenter__(self) -> EventStream:
        self._bus._add(self)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._bus._discard(self)
        await self._receive.aclose()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        try:
            event = await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            if self._dropped:  # the bus closed while we were behind: still say so
                event, self._dropped = EventsDropped(count=self._dropped), 0
                return event
            raise StopAsyncIteration from None
        if self._dropped:  # we just made room: queue the drop notice behind what is queued
            try:
                self._send.send_nowait(EventsDropped(count=self._dropped))
                self._dropped = 0
            except (trio.WouldBlock, trio.ClosedResourceError):
                pass
        return event

    def _end(self) -> None:
        self._send.close()


class EventBus:
    """Fan-out of events to any number of bounded streams (see the module docstring)."""

    def __init__(self, *, capacity: int = 1024) -> None:
        if capacity < 2:
            raise ValueError("an event queue needs room for at least two events")
        self._capacity = capacity
        self._streams: set[EventStream] = set()
        self._closed = False
        self.published = 0

    def publish(self, event: Event) -> None:
        """Offer ``event`` to every stream without ever blocking."""
        self.published += 1
        for stream in list(self._streams):
            stream._offer(event)

    def stream(self) -> EventStream:
        """A new stream; it starts receiving when entered with ``async with``."""
        if self._closed:
            raise ClosedError("the node is closed")
        return EventStream(self, self._capacity)

    def close(self) -> None:
        """End every stream (their iteration stops after the events already queued)."""
        self._closed = True
        for stream in list(self._streams):
            stream._end()
        self._streams.clear()

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    def _add(self, stream: EventStream) -> None:
        if self._closed:
            raise ClosedError("the node is closed")
        self._streams.add(stream)

    def _discard(self, stream: EventStream) -> None:
        self._streams.discard(stream)

from __future__ import annotations

import pytest
import trio
import trio.testing

from p2pchat.errors import ClosedError
from p2pchat.events import (
    DeliveryChanged,
    EventBus,
    EventsDropped,
    PeerConnected,
    PeerNearby,
    event_to_dict,
)


async def test_each_stream_gets_every_event_in_order() -> None:
    bus = EventBus(capacity=8)
    async with bus.stream() as a, bus.stream() as b:
        for i in range(3):
            bus.publish(PeerConnected(peer_id=f"p{i}"))
        bus.close()
        got_a = [e async for e in a]
        got_b = [e async for e in b]
    assert got_a == got_b == [PeerConnected(peer_id=f"p{i}") for i in range(3)]


async def test_overflow_drops_and_then_reports_the_count() -> None:
    bus = EventBus(capacity=2)
    async with bus.stream() as slow:
        for i in range(5):
            bus.publish(PeerConnected(peer_id=f"p{i}"))
        first = [await slow.__anext__(), await slow.__anext__()]
        bus.publish(PeerConnected(peer_id="late"))
        bus.close()
        rest = [e async for e in slow]
    assert first == [PeerConnected(peer_id="p0"), PeerConnected(peer_id="p1")]
    assert rest == [EventsDropped(count=3), PeerConnected(peer_id="late")]


async def test_a_slow_stream_does_not_block_publishers_or_others() -> None:
    bus = EventBus(capacity=2)
    async with bus.stream() as slow, bus.stream() as fast:
        received: list[str] = []

        async def consume() -> None:
            async for event in fast:
                assert isinstance(event, PeerConnected)
                received.append(event.peer_id)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            for i in range(50):
                bus.publish(PeerConnected(peer_id=str(i)))
                await trio.testing.wait_all_tasks_blocked()
            bus.close()
        assert received == [str(i) for i in range(50)]
        leftover = [e async for e in slow]
        assert leftover == [
            PeerConnected(peer_id="0"),
            PeerConnected(peer_id="1"),
            EventsDropped(count=48),
        ]


async def test_streams_leave_the_bus_when_exited_and_closed_bus_refuses() -> None:
    bus = EventBus(capacity=4)
    async with bus.stream():
        assert bus.stream_count == 1
    assert bus.stream_count == 0
    bus.close()
    with pytest.raises(ClosedError):
        bus.stream()


def test_event_to_dict_is_plain() -> None:
    event = DeliveryChanged(conversation_id="c", message_id=b"\x01\x02", state="sent")
    assert event_to_dict(event) == {
        "type": "dm.delivery",
        "conversation_id": "c",
        "message_id": "0102",
        "state": "sent",
        "reason": None,
    }
    assert event_to_dict(PeerNearby(peer_id="x", addrs=("a",)))["addrs"] == ["a"]

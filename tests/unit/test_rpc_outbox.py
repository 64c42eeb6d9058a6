"""The per-connection outbox: replies before events, live-event bound, reader backpressure."""

from __future__ import annotations

import trio
import trio.testing

from p2pchat.rpc.events import EventLog
from p2pchat.rpc.session import Subscription, _Outbox


def test_live_events_are_bounded_replays_are_not() -> None:
    box = _Outbox(max_live=2)
    log = EventLog(capacity=10)
    sub = Subscription(1, None)
    events = [log.append({"type": "t"}) for _ in range(5)]
    assert all(box.put_event(sub, e, live=False) for e in events)  # a replay
    assert box.put_event(sub, events[0], live=True)
    assert box.put_event(sub, events[1], live=True)
    assert not box.put_event(sub, events[2], live=True)  # the caller closes the session
    assert box.live_pending == 2


def test_nothing_is_queued_after_the_final_frame() -> None:
    box = _Outbox(max_live=2)
    box.put_control(b"bye", final=True)
    box.put_control(b"late")
    assert list(box.control) == [b"bye"]
    assert box.closing


async def test_reader_waits_while_replies_pile_up() -> None:
    box = _Outbox(max_live=1)
    box.put_control(b"r1")
    box.put_control(b"r2")
    passed = trio.Event()

    async def reader() -> None:
        await box.wait_for_room(2)
        passed.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            assert not passed.is_set()  # two replies unwritten: the reader holds
            box.control.popleft()  # the writer sends one...
            box.mark_drained()
            await passed.wait()


async def test_writer_wakes_for_new_frames() -> None:
    box = _Outbox(max_live=1)
    woke = trio.Event()

    async def writer() -> None:
        await box.wait()
        woke.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            await trio.testing.wait_all_tasks_blocked()
            assert not woke.is_set()
            box.put_control(b"x")
            await woke.wait()

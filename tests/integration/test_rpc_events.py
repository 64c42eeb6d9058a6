"""Subscriptions over a real socket: live events, filters, resume, gaps, slow consumers."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import trio
import trio.testing

from p2pchat.client import Client, Event, Gap, Subscription
from p2pchat.rpc import mint_token, revoke_token
from p2pchat.rpc.errors import AuthenticationError
from p2pchat.rpc.protocol import Close, EventMessage, Request, Response, encode_message
from tests.conftest import DeterministicRng
from tests.integration.test_rpc_fakes import running

LIMIT = 10


async def _take(sub: Subscription, n: int) -> list[Event | Gap]:
    return [await sub.__anext__() for _ in range(n)]


def _ns(items: list[Event | Gap]) -> list[int]:
    return [item.data["n"] for item in items if isinstance(item, Event)]


async def test_live_events_in_order_with_filter(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with running(tmp_path / "h") as r, await Client.connect(home=r.home) as client:
            r.server.publish({"type": "a", "n": -1})  # before subscribing: not delivered
            async with client.subscribe(["a"]) as sub_a, client.subscribe() as sub_all:
                for i in range(3):
                    r.server.publish({"type": "a", "n": i})
                    r.server.publish({"type": "b", "n": 10 + i})
                got_a = await _take(sub_a, 3)
                got_all = await _take(sub_all, 6)
            assert _ns(got_a) == [0, 1, 2]
            assert [e.cursor for e in got_a if isinstance(e, Event)] == [2, 4, 6]
            assert _ns(got_all) == [0, 10, 1, 11, 2, 12]
            assert r.server.statistics().events_published == 7


async def test_resume_after_cursor_replays_the_buffer(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with running(tmp_path / "h") as r, await Client.connect(home=r.home) as client:
            for i in range(5):
                r.server.publish({"type": "t", "n": i})
            async with client.subscribe(after_cursor=2) as sub:
                r.server.publish({"type": "t", "n": 5})
                items = await _take(sub, 4)
            assert _ns(items) == [2, 3, 4, 5]
            assert [i.cursor for i in items if isinstance(i, Event)] == [3, 4, 5, 6]


async def test_gap_is_reported_when_the_cursor_fell_out_of_the_buffer(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with (
            running(tmp_path / "h", event_log_capacity=5) as r,
            await Client.connect(home=r.home) as client,
        ):
            for i in range(10):
                r.server.publish({"type": "t", "n": i})  # cursors 1..10, 6..10 kept
            raw = await client.call("events.subscribe", {"after_cursor": 2})
            assert raw["gap"] is True
            assert raw["oldest_cursor"] == 6
            async with client.subscribe(after_cursor=2) as sub:
                items = await _take(sub, 6)
            assert items[0] == Gap(after_cursor=2, oldest_cursor=6)
            assert _ns(items[1:]) == [5, 6, 7, 8, 9]
            no_gap = await client.call("events.subscribe", {"after_cursor": 5})
            assert no_gap["gap"] is False


async def test_reconnect_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with running(tmp_path / "h") as r, await Client.connect(home=r.home) as client:
            async with client.subscribe(["t"]) as sub:
                for i in range(3):
                    r.server.publish({"type": "t", "n": i})
                first = await _take(sub, 3)
                # Cut the connection under the client, then publish while it is down.
                conn = client._conn
                assert conn is not None
                await conn.aclose()
                for i in range(3, 6):
                    r.server.publish({"type": "t", "n": i})
                second = await _take(sub, 3)
                r.server.publish({"type": "t", "n": 6})
                third = await _take(sub, 1)
                assert client._conn is not conn  # it really reconnected
            assert _ns(first + second + third) == [0, 1, 2, 3, 4, 5, 6]
            assert await client.call("rpc.ping") == {"pong": True}


async def _serve_until(
    home: Path, stop: trio.Event, done: trio.Event, *, task_status=trio.TASK_STATUS_IGNORED
):
    try:
        async with running(home) as r:
            task_status.started(r)
            await stop.wait()
    finally:
        done.set()


async def test_node_restart_resumes_with_a_gap(tmp_path: Path) -> None:
    home = tmp_path / "h"
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            stop_first, stop_second, first_done = trio.Event(), trio.Event(), trio.Event()
            r = await nursery.start(_serve_until, home, stop_first, first_done)
            async with await Client.connect(home=home, reconnect_timeout=LIMIT) as client:
                sub = client.subscribe()
                await sub.start()
                for i in range(3):
                    r.server.publish({"type": "t", "n": i})
                assert _ns(await _take(sub, 3)) == [0, 1, 2]
                stop_first.set()  # the node stops...
                await first_done.wait()
                # ...and restarts.
                r2 = await nursery.start(_serve_until, home, stop_second, trio.Event())
                # The new run's cursors pass the client's (3) before or after it reconnects;
                # either way it must get every new event, after a Gap (epochs differ).
                for i in range(100, 105):
                    r2.server.publish({"type": "t", "n": i})
                assert await client.call("rpc.ping") == {"pong": True}  # waits for reconnect
                items = await _take(sub, 6)
                assert sub.epoch == r2.server.epoch
                assert sub.epoch != r.server.epoch
                await sub.aclose()
            stop_second.set()
        assert items[0] == Gap(after_cursor=3, oldest_cursor=1)
        assert _ns(items[1:]) == [100, 101, 102, 103, 104]


async def test_slow_subscriber_is_disconnected_with_a_clear_code(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with running(tmp_path / "h", event_queue=5) as r:
            raw = await r.raw()
            hello = {"versions": [1, 1], "token": r.token}
            await raw.send_payload(encode_message(Request(0, "rpc.hello", hello)))
            await raw.send_payload(encode_message(Request(1, "events.subscribe", {})))
            assert isinstance(await raw.receive(), Response)
            assert isinstance(await raw.receive(), Response)
            for i in range(20):  # no checkpoint in between: the writer cannot drain
                r.server.publish({"type": "t", "n": i})
            received = []
            while True:
                msg = await raw.receive()
                if not isinstance(msg, EventMessage):
                    break
                received.append(msg.event["n"])
            assert isinstance(msg, Close)
            assert (msg.error.code, msg.error.name) == (1103, "slow-consumer")
            assert await raw.receive() is None
            # Policy: on overflow the queued events are dropped and ``close`` goes out next;
            # the client resumes from its cursor, so sending them would be wasted work.
            assert received == []
            assert r.server.statistics().slow_consumer_disconnects == 1


async def test_slow_client_resumes_from_its_cursor_after_disconnect(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with (
            running(tmp_path / "h", event_queue=5) as r,
            await Client.connect(home=r.home) as client,
            client.subscribe(["t"]) as sub,
        ):
            for i in range(50):
                r.server.publish({"type": "t", "n": i})
            items = await _take(sub, 50)
            assert _ns(items) == list(range(50))  # nothing lost, nothing repeated
            assert r.server.statistics().slow_consumer_disconnects >= 1


async def test_unsubscribe_stops_delivery(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with running(tmp_path / "h") as r, await Client.connect(home=r.home) as client:
            sub_a = client.subscribe(["a"])
            async with client.subscribe(["a"]) as sub_b:
                await sub_a.start()
                r.server.publish({"type": "a", "n": 1})
                assert _ns(await _take(sub_a, 1)) == [1]
                await sub_a.aclose()
                r.server.publish({"type": "a", "n": 2})
                assert _ns(await _take(sub_b, 2)) == [1, 2]
            items = [item async for item in sub_a]  # closed: iteration ends
            assert items == []


async def test_iter_events_generator(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with running(tmp_path / "h") as r, await Client.connect(home=r.home) as client:
            for i in range(3):
                r.server.publish({"type": "t", "n": i})
            seen = []
            events = client.iter_events(after_cursor=0)
            async with contextlib.aclosing(events):
                async for item in events:
                    assert isinstance(item, Event)
                    seen.append(item.data["n"])
                    if len(seen) == 3:
                        break
            assert seen == [0, 1, 2]


async def test_revoked_token_ends_resume_with_authentication_error(tmp_path: Path) -> None:
    home = tmp_path / "h"
    with trio.fail_after(LIMIT):
        async with running(home) as r:
            token_id, token = mint_token(home, scopes=["read"], label="app", rng=DeterministicRng())
            async with await Client.connect(home=home, token=token) as client:
                sub = client.subscribe()
                await sub.start()
                r.server.publish({"type": "t", "n": 1})
                assert _ns(await _take(sub, 1)) == [1]
                revoke_token(home, token_id)
                conn = client._conn
                assert conn is not None
                await conn.aclose()  # the next connection must present the token again
                with pytest.raises(AuthenticationError):
                    await sub.__anext__()
                with pytest.raises(AuthenticationError):
                    await client.call("rpc.ping")


async def test_slow_consumer_that_never_reads_is_cut_off(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    """A subscriber whose socket is full cannot hold the connection open: after the overflow
    the close frame gets ``close_grace`` seconds to go out, then the server hangs up
    regardless. The clock runs at real speed, and jumps over the grace period."""
    mock_clock.rate = 1.0
    with trio.fail_after(LIMIT):
        async with running(tmp_path / "h", event_queue=3, close_grace=1.0) as r:
            raw = await r.raw()
            hello = {"versions": [1, 1], "token": r.token}
            await raw.send_payload(encode_message(Request(0, "rpc.hello", hello)))
            await raw.send_payload(encode_message(Request(1, "events.subscribe", {})))
            assert isinstance(await raw.receive(), Response)
            assert isinstance(await raw.receive(), Response)
            blob = "x" * 60_000
            published = 0
            while r.server.statistics().slow_consumer_disconnects == 0:
                r.server.publish({"type": "t", "blob": blob})
                published += 1
                await trio.testing.wait_all_tasks_blocked()  # the writer fills the socket
            assert published > 3  # some went out before the socket filled up
            assert r.server.statistics().connections == 1  # the writer is stuck in send
            mock_clock.jump(1.5)  # past close_grace, without waiting for it
            await trio.testing.wait_all_tasks_blocked()
            assert r.server.statistics().connections == 0

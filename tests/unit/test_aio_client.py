"""The asyncio client against the real RPC server, which runs in a trio thread.

Each test is a plain sync function around ``asyncio.run``: pytest-trio's trio mode
owns ``async def`` tests, and the point here is that the client side is asyncio.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest
import trio

import p2pchat.aio._client
import p2pchat.aio._thread
from p2pchat.aio import AsyncioClient, Event, Gap, TrioThread, start_trio_thread
from p2pchat.errors import ClosedError, ConfigError, NetworkError, NotFoundError
from p2pchat.rpc.errors import AuthenticationError, InvalidParamsError, SlowConsumerError
from tests.integration.test_rpc_fakes import Running, running

LIMIT = 20.0  # seconds: every asyncio test body is bounded by this
T = TypeVar("T")


def run(body: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(LIMIT):
            return await body()

    return asyncio.run(bounded())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TrioThread[Running]]:
    handle = start_trio_thread(lambda: running(tmp_path / "h"), ready_timeout=LIMIT)
    try:
        yield handle
    finally:
        handle.stop(timeout=LIMIT)


def publish(server: TrioThread[Running], event: dict[str, Any]) -> int:
    cursor: int = server.run_sync(server.value.server.publish, event)
    return cursor


def test_calls_return_results_and_raise_the_handlers_error_class(
    server: TrioThread[Running],
) -> None:
    home = server.value.home

    async def body() -> None:
        async with await AsyncioClient.connect(home=home) as client:
            assert client.info is not None
            assert client.info.node["peer_id"] == "12D3KooWFake"
            assert client.info.scopes == frozenset({"admin", "read", "send"})
            assert await client.call("test.echo", {"text": "hé", "times": 2}) == {"text": "héhé"}
            assert await client.call("rpc.ping") == {"pong": True}
            with pytest.raises(NotFoundError, match="carol"):
                await client.call("test.lookup", {"name": "carol"})
            with pytest.raises(InvalidParamsError):
                await client.call("test.echo", {"text": 1})
            # The connection is still usable after errors.
            assert await client.call("test.send", {"to": "bob", "text": "x"}) == {"id": 1}
        with pytest.raises(ClosedError):
            await client.call("rpc.ping")

    run(body)
    assert server.value.backend.sent == [("bob", "x")]


def test_a_wrong_token_is_refused_and_the_token_never_shows(
    server: TrioThread[Running],
) -> None:
    home, token = server.value.home, server.value.token

    async def body() -> None:
        with pytest.raises(AuthenticationError) as refused:
            await AsyncioClient.connect(home=home, token="p2pc_wrong")
        assert "p2pc_wrong" not in str(refused.value)
        async with await AsyncioClient.connect(home=home) as client:
            sub = client.subscribe(["x"])
            for shown in (repr(client), str(client), repr(sub), repr(client.info)):
                assert token not in shown

    run(body)


def test_events_arrive_in_order_filtered_and_resume_by_cursor(
    server: TrioThread[Running],
) -> None:
    home = server.value.home

    async def body() -> None:
        async with await AsyncioClient.connect(home=home) as client:
            async with client.subscribe(["a"]) as sub:
                for i in range(3):
                    publish(server, {"type": "a", "n": i})
                    publish(server, {"type": "b", "n": 10 + i})
                got = [await anext(sub) for _ in range(3)]
            assert [(e.type, e.data["n"]) for e in got if isinstance(e, Event)] == [
                ("a", 0),
                ("a", 1),
                ("a", 2),
            ]
            assert sub.server_id is None  # unsubscribed on exit
            epoch, last = sub.epoch, sub.last_cursor
            assert isinstance(got[-1], Event)
            assert last == got[-1].cursor

        # A later connection resumes after the persisted cursor: nothing lost or repeated.
        publish(server, {"type": "a", "n": 3})
        async with (
            await AsyncioClient.connect(home=home) as client,
            client.subscribe(["a"], after_cursor=last, epoch=epoch) as sub,
        ):
            item = await anext(sub)
            assert isinstance(item, Event)
            assert item.data["n"] == 3

        # From another run (epoch) of the node: the client is told it may have missed events.
        async with (
            await AsyncioClient.connect(home=home) as client,
            client.subscribe(["a"], after_cursor=last, epoch="not-this-run") as sub,
        ):
            first = await anext(sub)
            assert isinstance(first, Gap)
            assert first.after_cursor == last
            replayed = await anext(sub)
            assert isinstance(replayed, Event)
            assert replayed.data["n"] == 0  # the whole buffer, from the start

    run(body)


def test_a_call_without_reply_times_out(server: TrioThread[Running]) -> None:
    home = server.value.home

    async def body() -> None:
        async with await AsyncioClient.connect(home=home, call_timeout=0.2) as client:
            with pytest.raises(NetworkError, match="no reply"):
                await client.call("test.block")
            assert await client.call("rpc.ping") == {"pong": True}

    run(body)
    server.run_sync(server.value.backend.release.set)


def test_when_the_node_goes_away_calls_and_subscriptions_end_with_network_error(
    tmp_path: Path,
) -> None:
    handle = start_trio_thread(lambda: running(tmp_path / "h"), ready_timeout=LIMIT)
    home = handle.value.home

    async def body() -> None:
        async with await AsyncioClient.connect(home=home) as client:
            sub = client.subscribe()
            await sub.start()
            waiting = asyncio.ensure_future(client.call("test.block"))
            await asyncio.to_thread(handle.run, handle.value.backend.wait_blocked, 1)
            await asyncio.to_thread(handle.stop, LIMIT)
            with pytest.raises(NetworkError):
                await waiting
            with pytest.raises(NetworkError):
                await anext(sub)
            with pytest.raises(NetworkError):
                await client.call("rpc.ping")

    run(body)


def test_a_slow_consumer_close_ends_the_subscription_with_its_reason(tmp_path: Path) -> None:
    handle = start_trio_thread(lambda: running(tmp_path / "h", event_queue=2), ready_timeout=LIMIT)
    try:
        home = handle.value.home

        async def body() -> None:
            async with await AsyncioClient.connect(home=home) as client:
                sub = client.subscribe()
                await sub.start()
                # Published in one trio step: more than the server queues for us.
                handle.run_sync(
                    lambda: [handle.value.server.publish({"type": "t"}) for _ in range(5)]
                )
                items: list[Event | Gap] = []
                with pytest.raises(SlowConsumerError):
                    items.extend([item async for item in sub])
                assert len(items) <= 2

        run(body)
    finally:
        handle.stop(timeout=LIMIT)


def test_trio_side_errors_reach_the_caller() -> None:
    handle_missing = True

    @asynccontextmanager
    async def broken_on_enter() -> AsyncIterator[None]:
        if handle_missing:
            raise NotFoundError("no such thing")
        yield

    with pytest.raises(NotFoundError):
        start_trio_thread(broken_on_enter, ready_timeout=LIMIT)

    @asynccontextmanager
    async def crashes_later() -> AsyncIterator[trio.Event]:
        crashed = trio.Event()
        async with trio.open_nursery() as nursery:

            async def crash(task_status: trio.TaskStatus[None]) -> None:
                task_status.started()  # waiting before the caller can set the event: else
                await crashed.wait()  # stop() could cancel it before its first step
                raise NotFoundError("background crash")

            await nursery.start(crash)
            yield crashed

    handle = start_trio_thread(crashes_later, ready_timeout=LIMIT)
    handle.run_sync(handle.value.set)
    with pytest.raises(ExceptionGroup) as crashed:
        handle.stop(timeout=LIMIT)
    assert crashed.group_contains(NotFoundError, match="background crash")
    with pytest.raises(ClosedError):
        handle.run_sync(print)


def _module_imports(module: ModuleType) -> set[str]:
    """Every module an ``import`` statement anywhere in ``module`` names."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _top_level_imports(module: ModuleType) -> set[str]:
    tree = ast.parse(inspect.getsource(module))
    return {alias.name for n in tree.body if isinstance(n, ast.Import) for alias in n.names} | {
        n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.module
    }


def test_the_asyncio_client_never_imports_trio() -> None:
    """The client module has no trio at all; the thread helpers import it only when used."""
    assert not {m for m in _module_imports(p2pchat.aio._client) if m.split(".")[0] == "trio"}
    assert "trio" not in _top_level_imports(p2pchat.aio._thread)
    assert "trio" in _module_imports(p2pchat.aio._thread)  # the check can see trio imports


def test_importing_the_asyncio_path_does_not_load_libp2p_or_the_node() -> None:
    """An asyncio app that only talks RPC pays for neither py-libp2p nor the node."""
    probe = (
        "import sys, p2pchat.aio\n"
        "print(sorted(m for m in ('libp2p', 'p2pchat.node') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=LIMIT, check=True
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("host", ["192.0.2.1", "localhost", "0.0.0.0", "example.org"])
def test_tcp_is_refused_for_anything_but_a_loopback_literal(host: str) -> None:
    async def body() -> None:
        with pytest.raises(ConfigError, match="loopback only"):
            await AsyncioClient.connect(tcp=(host, 1), token="p2pc_x")

    run(body)


def test_a_failed_subscribe_raises_on_every_later_anext(server: TrioThread[Running]) -> None:
    home = server.value.home

    async def body() -> None:
        async with await AsyncioClient.connect(home=home) as client:
            sub = client.subscribe(["a"], after_cursor=(1 << 53))  # out of range: -32602
            for _ in range(2):
                with pytest.raises(InvalidParamsError):
                    await anext(sub)

    run(body)

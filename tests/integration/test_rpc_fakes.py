"""A fake node backend for the RPC tests and ``bench/rpc_bench.py``, and helpers.

The fake registers a few methods the way the real node will (typed params dataclass,
scope, docstring) so the tests exercise exactly the node-facing API.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import trio

from p2pchat.errors import NotFoundError
from p2pchat.protocol.framing import FrameDecoder, encode_frame
from p2pchat.rpc import Bounds, NoParams, Registry, RpcServer, ServerConfig, open_rpc_server
from p2pchat.rpc.auth import ensure_admin_token
from p2pchat.rpc.protocol import ServerMessage, parse_server_message, unpack_payload
from tests.conftest import DeterministicRng

_runs = itertools.count()
NODE_INFO = {"peer_id": "12D3KooWFake", "version": "0.1.0"}


@dataclass(frozen=True, slots=True)
class EchoParams:
    text: Annotated[str, Bounds(max_len=100_000)]
    times: Annotated[int, Bounds(min=1, max=5)] = 1


@dataclass(frozen=True, slots=True)
class SendParams:
    to: Annotated[str, Bounds(max_len=64)]
    text: Annotated[str, Bounds(max_len=1000)]


@dataclass(frozen=True, slots=True)
class LookupParams:
    name: str


@dataclass(frozen=True, slots=True)
class PublishParams:
    type: str
    count: Annotated[int, Bounds(min=1, max=10_000)] = 1


class FakeBackend:
    """What a node would do, minus the network: records sends, raises on unknown names."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.release = trio.Event()
        self.blocked = 0
        self._blocked_waiters: list[tuple[int, trio.Event]] = []
        self.server: RpcServer | None = None

    async def echo(self, p: EchoParams) -> dict[str, Any]:
        """Return the text, repeated."""
        return {"text": p.text * p.times}

    async def send(self, p: SendParams) -> dict[str, Any]:
        """Pretend to send a direct message."""
        self.sent.append((p.to, p.text))
        return {"id": len(self.sent)}

    async def wipe(self, p: NoParams) -> dict[str, Any]:
        """An admin-only operation."""
        self.sent.clear()
        return {}

    async def lookup(self, p: LookupParams) -> dict[str, Any]:
        raise NotFoundError(f"no contact named {p.name!r}")

    async def bug(self, p: NoParams) -> None:
        secret = {"api_key": "SECRET-KEY-42"}
        raise KeyError(secret["nope" if secret else "x"])

    async def unencodable(self, p: NoParams) -> object:
        return {"when": object()}

    async def block(self, p: NoParams) -> dict[str, Any]:
        self.blocked += 1
        for n, event in self._blocked_waiters:
            if self.blocked >= n:
                event.set()
        await self.release.wait()
        return {}

    async def wait_blocked(self, n: int) -> None:
        """Wait until ``n`` calls of ``test.block`` are parked."""
        if self.blocked < n:
            event = trio.Event()
            self._blocked_waiters.append((n, event))
            await event.wait()

    async def publish(self, p: PublishParams) -> dict[str, Any]:
        assert self.server is not None
        cursors = [self.server.publish({"type": p.type, "n": i}) for i in range(p.count)]
        return {"cursors": cursors}


def make_registry(backend: FakeBackend) -> Registry:
    reg = Registry()
    reg.add("test.echo", backend.echo, scope="read", params=EchoParams)
    reg.add("test.send", backend.send, scope="send", params=SendParams)
    reg.add("test.wipe", backend.wipe, scope="admin", params=NoParams)
    reg.add("test.lookup", backend.lookup, scope="read", params=LookupParams)
    reg.add("test.bug", backend.bug, scope="read", params=NoParams)
    reg.add("test.unencodable", backend.unencodable, scope="read", params=NoParams)
    reg.add("test.block", backend.block, scope="read", params=NoParams)
    reg.add("test.publish", backend.publish, scope="admin", params=PublishParams)
    return reg


@dataclass(frozen=True, slots=True)
class Running:
    server: RpcServer
    home: Path
    token: str
    backend: FakeBackend
    raws: list[RawConnection]

    async def raw(self) -> RawConnection:
        """A raw connection, closed when the server block exits."""
        conn = await RawConnection.open(self.home)
        self.raws.append(conn)
        return conn


@asynccontextmanager
async def running(home: Path, **config: Any) -> AsyncIterator[Running]:
    """A server on ``home`` with the fake backend; ``config`` overrides ServerConfig."""
    token = ensure_admin_token(home, rng=DeterministicRng(str(home)))
    backend = FakeBackend()
    async with open_rpc_server(
        home=home,
        registry=make_registry(backend),
        node_info=NODE_INFO,
        config=ServerConfig(**config),
        rng=DeterministicRng(f"epoch-{home}-{next(_runs)}"),
    ) as server:
        backend.server = server
        r = Running(server, home, token, backend, [])
        try:
            yield r
        finally:
            for conn in r.raws:
                await conn.stream.aclose()


class RawConnection:
    """A bare socket speaking frames, for tests that must misbehave."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.decoder = FrameDecoder()

    @classmethod
    async def open(cls, home: Path) -> RawConnection:
        return cls(await trio.open_unix_socket(str(home / "rpc.sock")))

    async def __aenter__(self) -> RawConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stream.aclose()

    async def send_payload(self, payload: bytes) -> None:
        await self.stream.send_all(encode_frame(payload))

    async def receive(self) -> ServerMessage | None:
        """The next server message, or ``None`` at end of stream."""
        while True:
            frame = self.decoder.next_frame()
            if frame is not None:
                return parse_server_message(unpack_payload(frame))
            data = await self.stream.receive_some(65536)
            if not data:
                return None
            self.decoder.feed(data)


async def test_fake_backend_direct_calls() -> None:
    """The backend the bench compares against works in-process (no RPC)."""
    backend = FakeBackend()
    assert await backend.echo(EchoParams("ab", times=2)) == {"text": "abab"}
    assert await backend.send(SendParams("bob", "hi")) == {"id": 1}
    assert backend.sent == [("bob", "hi")]
    assert {m.name for m in make_registry(backend)} >= {"test.echo", "test.publish"}

"""The RPC server over a real unix socket: hello, auth, scopes, errors, limits, listeners."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import random
import socket
import stat
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio

from p2pchat.client import Client
from p2pchat.errors import (
    ClosedError,
    ConfigError,
    LocalProtocolError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    WireError,
)
from p2pchat.protocol.framing import encode_frame
from p2pchat.rpc import ServerConfig, mint_token, open_rpc_server
from p2pchat.rpc.errors import (
    AuthenticationError,
    InternalServerError,
    InvalidParamsError,
    InvalidRequestError,
    MethodNotFoundError,
)
from p2pchat.rpc.protocol import Close, ErrorResponse, Request, Response, encode_message
from tests.conftest import DeterministicRng
from tests.integration.test_rpc_fakes import NODE_INFO, RawConnection, make_registry, running

LIMIT = 10  # seconds: every test is bounded


def _hello(token: str, versions: list[int] | None = None) -> bytes:
    params = {"versions": versions or [1, 1], "token": token, "client": "raw"}
    return encode_message(Request(0, "rpc.hello", params))


async def test_hello_negotiates_version_and_reports_node(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with running(tmp_path / "h") as r, await Client.connect(home=r.home) as client:
            assert client.info.version == 1
            assert client.info.node == NODE_INFO
            assert client.info.scopes == {"read", "send", "admin"}
            assert client.info.limits["max_frame"] == ServerConfig().max_frame
            assert await client.call("rpc.ping") == {"pong": True}
            assert r.server.statistics().connections == 1


async def test_version_range_overlap_and_mismatch(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with running(tmp_path / "h") as r:
            raw = await r.raw()
            await raw.send_payload(_hello(r.token, [0, 7]))
            reply = await raw.receive()
            assert isinstance(reply, Response)
            assert reply.result["version"] == 1

            raw = await r.raw()
            await raw.send_payload(_hello(r.token, [2, 3]))
            reply = await raw.receive()
            assert isinstance(reply, ErrorResponse)
            assert (reply.id, reply.error.code, reply.error.name) == (0, 1102, "version-mismatch")
            assert await raw.receive() is None  # and the server hung up


@pytest.mark.parametrize(
    "first",
    [
        _hello("p2pc_not-the-token"),
        encode_message(Request(0, "rpc.hello", {"versions": [1, 1]})),  # no token
        encode_message(Request(1, "rpc.ping", {})),  # no hello at all
        b"\xc1",  # not even msgpack
    ],
    ids=["wrong-token", "missing-token", "no-hello", "garbage"],
)
async def test_unauthenticated_connections_get_only_an_error(tmp_path: Path, first: bytes) -> None:
    with trio.fail_after(LIMIT):
        async with running(tmp_path / "h") as r:
            raw = await r.raw()
            await raw.send_payload(first)
            # Pipelined requests after a bad hello must get nothing at all.
            await raw.send_payload(encode_message(Request(2, "test.echo", {"text": "x"})))
            reply = await raw.receive()
            assert isinstance(reply, ErrorResponse)
            assert reply.error.code in {1101, -32602, -32700}
            assert r.token not in reply.error.message
            assert await raw.receive() is None
            assert r.backend.sent == []


async def test_client_raises_authentication_error(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with running(tmp_path / "h") as r:
            with pytest.raises(AuthenticationError) as info:
                await Client.connect(home=r.home, token="p2pc_guess")
            assert "p2pc_guess" not in str(info.value)


async def test_scopes_are_enforced(tmp_path: Path) -> None:
    home = tmp_path / "h"
    with trio.fail_after(LIMIT):
        async with running(home) as r:
            _, reader = mint_token(home, scopes=["read"], label="shop", rng=DeterministicRng(1))
            _, sender = mint_token(home, scopes=["send"], label="bot", rng=DeterministicRng(2))
            async with await Client.connect(home=home, token=reader) as client:
                assert client.info.scopes == {"read"}
                assert await client.call("test.echo", {"text": "a"}) == {"text": "a"}
                with pytest.raises(PermissionDeniedError, match="send"):
                    await client.call("test.send", {"to": "bob", "text": "hi"})
                with pytest.raises(PermissionDeniedError, match="admin"):
                    await client.call("test.wipe")
                assert await client.call("rpc.ping") == {"pong": True}
            async with await Client.connect(home=home, token=sender) as client:
                assert await client.call("test.send", {"to": "bob", "text": "hi"}) == {"id": 1}
                with pytest.raises(PermissionDeniedError):
                    await client.call("test.echo", {"text": "a"})
                with pytest.raises(PermissionDeniedError):
                    await client.call("events.subscribe", {})
            async with await Client.connect(home=home) as admin:
                assert await admin.call("test.wipe") == {}
            assert r.backend.sent == []


async def test_method_and_params_errors(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with running(tmp_path / "h"), await Client.connect(home=tmp_path / "h") as client:
            with pytest.raises(MethodNotFoundError):
                await client.call("test.nope")
            with pytest.raises(InvalidParamsError, match="unknown params: colour"):
                await client.call("test.echo", {"text": "a", "colour": "red"})
            with pytest.raises(InvalidParamsError, match="text must be str"):
                await client.call("test.echo", {"text": 5})
            with pytest.raises(InvalidParamsError, match="times out of range"):
                await client.call("test.echo", {"text": "a", "times": 9})
            with pytest.raises(InvalidRequestError):
                await client.call("rpc.hello", {"versions": [1, 1], "token": "x"})
            assert await client.call("test.echo", {"text": "ok"}) == {"text": "ok"}


async def test_not_found_maps_to_its_code_and_class(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with running(tmp_path / "h") as r:
            async with await Client.connect(home=r.home) as client:
                with pytest.raises(NotFoundError, match="no contact named 'carol'"):
                    await client.call("test.lookup", {"name": "carol"})
            raw = await r.raw()
            await raw.send_payload(_hello(r.token))
            assert isinstance(await raw.receive(), Response)
            await raw.send_payload(encode_message(Request(5, "test.lookup", {"name": "x"})))
            reply = await raw.receive()
            assert isinstance(reply, ErrorResponse)
            assert (reply.id, reply.error.code, reply.error.name) == (5, 1001, "not-found")


async def test_handler_bug_is_internal_error_and_server_survives(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(LIMIT):
        async with running(tmp_path / "h"), await Client.connect(home=tmp_path / "h") as client:
            with caplog.at_level(logging.ERROR, logger="p2pchat.rpc"):
                with pytest.raises(InternalServerError) as info:
                    await client.call("test.bug")
                assert "SECRET" not in str(info.value)
                assert "KeyError" not in str(info.value)
                with pytest.raises(InternalServerError):
                    await client.call("test.unencodable")
            assert any("test.bug" in rec.getMessage() for rec in caplog.records)
            assert any(rec.exc_info for rec in caplog.records)  # the traceback is in the log
            assert await client.call("test.echo", {"text": "still up"}) == {"text": "still up"}


async def test_malformed_frames(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with running(tmp_path / "h", max_frame=4096) as r:
            raw = await r.raw()
            await raw.send_payload(_hello(r.token))
            assert isinstance(await raw.receive(), Response)
            # Not msgpack: an error reply without id; the connection stays usable.
            await raw.send_payload(msgpack.packb({"type": "request"}) + b"junk")
            reply = await raw.receive()
            assert isinstance(reply, ErrorResponse)
            assert (reply.id, reply.error.code) == (None, -32700)
            assert reply.error.data == {"reason": "trailing-bytes"}
            # Valid msgpack, invalid request: the id is echoed back.
            await raw.send_payload(msgpack.packb({"type": "request", "id": 9, "method": 3}))
            reply = await raw.receive()
            assert isinstance(reply, ErrorResponse)
            assert (reply.id, reply.error.code) == (9, -32600)
            await raw.send_payload(encode_message(Request(10, "rpc.ping", {})))
            assert await raw.receive() == Response(10, {"pong": True})
            # A framing error (length beyond max_frame) closes the connection.
            await raw.stream.send_all(b"\xff\xff\x03")
            closing = await raw.receive()
            assert isinstance(closing, Close)
            assert closing.error.code == -32700
            assert await raw.receive() is None


async def test_in_flight_limit(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with running(tmp_path / "h", max_in_flight=2) as r:
            async with await Client.connect(home=r.home) as client, trio.open_nursery() as n:
                n.start_soon(client.call, "test.block")
                n.start_soon(client.call, "test.block")
                await r.backend.wait_blocked(2)
                with pytest.raises(RateLimitedError, match="in flight"):
                    await client.call("test.echo", {"text": "x"})
                r.backend.release.set()
            assert await client_call_after(r.home) == {"text": "x"}


async def client_call_after(home: Path) -> Any:
    async with await Client.connect(home=home) as client:
        return await client.call("test.echo", {"text": "x"})


async def test_request_rate_limit(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with (
            running(tmp_path / "h", rate=0.001, burst=3) as r,
            await Client.connect(home=r.home) as client,
        ):
            for _ in range(3):
                await client.call("rpc.ping")
            with pytest.raises(RateLimitedError, match="rate"):
                await client.call("rpc.ping")


async def test_subscription_limit(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with (
            running(tmp_path / "h", max_subscriptions=2) as r,
            await Client.connect(home=r.home) as client,
        ):
            await client.call("events.subscribe", {})
            await client.call("events.subscribe", {"types": ["a"]})
            with pytest.raises(RateLimitedError, match="subscriptions"):
                await client.call("events.subscribe", {})
            with pytest.raises(InvalidParamsError):
                await client.call("events.unsubscribe", {"sub": -1})
            with pytest.raises(NotFoundError):
                await client.call("events.unsubscribe", {"sub": 99})


async def test_hello_timeout(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with running(tmp_path / "h", hello_timeout=0.05) as r:
            raw = await r.raw()
            closing = await raw.receive()
            assert isinstance(closing, Close)
            assert closing.error.code == 1101
            assert await raw.receive() is None


async def test_socket_permissions_and_cleanup(tmp_path: Path) -> None:
    home = tmp_path / "h"
    with trio.fail_after(LIMIT):
        async with running(home) as r:
            assert r.server.unix_path == home / "rpc.sock"
            assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
            sock_mode = os.stat(home / "rpc.sock").st_mode
            assert stat.S_ISSOCK(sock_mode)
            assert stat.S_IMODE(sock_mode) == 0o600
        assert not (home / "rpc.sock").exists()


async def test_stale_socket_is_replaced_live_one_is_not(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(home / "rpc.sock"))
    stale.close()  # the file stays, nobody listens: a crashed node
    with trio.fail_after(LIMIT):
        async with running(home) as r:
            assert await client_call_after(r.home) == {"text": "x"}
            with pytest.raises(ConfigError, match="already serving"):
                async with running(home):
                    pass  # pragma: no cover
            assert await client_call_after(r.home) == {"text": "x"}


async def test_non_socket_file_is_not_replaced(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    (home / "rpc.sock").write_text("precious")
    with trio.fail_after(LIMIT), pytest.raises(ConfigError, match="not a socket"):
        async with running(home):
            pass  # pragma: no cover
    assert (home / "rpc.sock").read_text() == "precious"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "localhost", "::", "example.org"])
async def test_tcp_refuses_non_loopback(tmp_path: Path, host: str) -> None:
    with trio.fail_after(LIMIT), pytest.raises(ConfigError):
        async with running(tmp_path / "h", tcp_host=host, tcp_port=0):
            pass  # pragma: no cover


async def test_tcp_loopback_works_with_token(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with running(tmp_path / "h", tcp_port=0) as r:
            assert r.server.tcp_address is not None
            host, port = r.server.tcp_address
            assert host == "127.0.0.1"
            assert port > 0
            async with await Client.connect(tcp=(host, port), token=r.token) as client:
                assert await client.call("test.echo", {"text": "tcp"}) == {"text": "tcp"}
            with pytest.raises(AuthenticationError):
                await Client.connect(tcp=(host, port), token="p2pc_wrong")


async def test_client_lifecycle(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with running(tmp_path / "h") as r:
            client = await Client.connect(home=r.home)
            with pytest.raises(LocalProtocolError, match="async with"):
                await client.call("rpc.ping")
            async with client:
                assert r.token not in repr(client)
            with pytest.raises(ClosedError):
                await client.call("rpc.ping")
            with pytest.raises(LocalProtocolError, match="once"):
                async with client:
                    pass  # pragma: no cover


async def test_methods_introspection(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with running(tmp_path / "h"), await Client.connect(home=tmp_path / "h") as client:
            methods = await client.call("rpc.methods")
            assert methods["test.send"]["scope"] == "send"
            assert methods["test.send"]["params"]["to"] == {
                "type": "str",
                "required": True,
                "max_len": 64,
            }
            assert methods["test.echo"]["doc"] == "Return the text, repeated."
            assert methods["events.subscribe"]["scope"] == "read"
            assert set(methods) >= {"rpc.hello", "rpc.ping", "rpc.methods", "events.unsubscribe"}


async def test_max_connections(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with (
            running(tmp_path / "h", max_connections=1) as r,
            await Client.connect(home=r.home),
        ):
            with pytest.raises(RateLimitedError, match="too many"):
                await Client.connect(home=r.home)


async def test_server_without_token_file_refuses_everyone(tmp_path: Path) -> None:
    home = tmp_path / "h"
    with trio.fail_after(LIMIT):
        async with (
            open_rpc_server(
                home=home, registry=make_registry_for_test(), node_info={}, rng=DeterministicRng()
            ),
            await RawConnection.open(home) as raw,
        ):
            await raw.send_payload(_hello("p2pc_anything"))
            reply = await raw.receive()
            assert isinstance(reply, ErrorResponse)
            assert await raw.receive() is None


def make_registry_for_test() -> Any:
    from tests.integration.test_rpc_fakes import FakeBackend

    return make_registry(FakeBackend())


async def test_server_survives_a_stream_of_mutated_frames(tmp_path: Path) -> None:
    """Junk after a valid hello: frames are answered or the connection is closed, and the
    server keeps serving."""
    rnd = random.Random(7)
    seeds = [
        encode_message(Request(1, "test.echo", {"text": "hello", "times": 2})),
        encode_message(Request(2, "events.subscribe", {"types": ["a"], "after_cursor": 0})),
        encode_message(Request(3, "test.send", {"to": "bob", "text": "x"})),
        encode_message(Request(4, "events.unsubscribe", {"sub": 1})),
    ]
    with trio.fail_after(30):
        async with running(tmp_path / "h") as r:
            sent = 0
            kinds: collections.Counter[str] = collections.Counter()
            while sent < 300:
                async with await RawConnection.open(r.home) as raw:
                    await raw.send_payload(_hello(r.token))
                    assert isinstance(await raw.receive(), Response)
                    for _ in range(20):
                        frame = bytearray(encode_frame(rnd.choice(seeds)))
                        for _ in range(rnd.randint(1, 3)):
                            frame[rnd.randrange(len(frame))] = rnd.randrange(256)
                        sent += 1
                        try:
                            await raw.stream.send_all(bytes(frame))
                        except trio.BrokenResourceError:
                            break
                    # Anything may come back (replies, errors, a close); after our EOF
                    # the server must finish the connection. (A corrupted length prefix
                    # may leave it waiting for the rest of a frame: EOF ends that too.)
                    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                        await raw.stream.send_eof()
                    while (msg := await _receive_or_none(raw)) is not None:
                        kinds[type(msg).__name__] += 1
            assert await client_call_after(r.home) == {"text": "x"}
        # The junk reached every layer: handled requests, error replies and closes.
        assert kinds["Response"] > 0
        assert kinds["ErrorResponse"] > 0
        assert kinds["Close"] > 0


async def _receive_or_none(raw: RawConnection) -> Any:
    try:
        return await raw.receive()
    except (trio.BrokenResourceError, WireError):
        return None  # reset by the server, or a frame cut off by the hang-up


async def test_silent_connections_never_lock_the_owner_out(tmp_path: Path) -> None:
    """Issue 12: 64 connections that never say hello filled the cap (close 1003)."""
    with trio.fail_after(LIMIT):
        async with running(tmp_path / "h", max_connections=4) as r:
            for _ in range(70):  # connected, never a word (closed when the server stops)
                await r.raw()
            for _ in range(3):  # repeatably, and without waiting for the hello deadline
                async with await Client.connect(home=r.home) as client:
                    assert await client.call("rpc.ping") is not None
            assert r.server.unauthenticated_dropped >= 70 - r.server.config.max_unauthenticated

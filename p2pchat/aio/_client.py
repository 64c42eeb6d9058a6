"""The asyncio RPC client: native asyncio streams around the sans-IO RPC codec.

See :mod:`p2pchat.aio` for how it fits with a node running in a thread or a process.
This module imports no trio (and no node, no libp2p): an asyncio app that only talks to
a node should not pay for them. (Importing ``p2pchat.rpc.protocol`` still runs the
``p2pchat.rpc`` package ``__init__``, which loads the trio server; that is for the
package's owner to make lazy.)
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from p2pchat.client._types import Event, Gap, Page, ServerInfo, server_info
from p2pchat.errors import (
    ClosedError,
    ConfigError,
    LocalProtocolError,
    NetworkError,
    P2PChatError,
    WireError,
)
from p2pchat.protocol.framing import MAX_FRAME, FrameDecoder, encode_frame
from p2pchat.rpc.auth import read_admin_token
from p2pchat.rpc.errors import exception_for
from p2pchat.rpc.protocol import (
    PROTOCOL_VERSION_MAX,
    PROTOCOL_VERSION_MIN,
    Close,
    ErrorResponse,
    EventMessage,
    Request,
    Response,
    ServerMessage,
    encode_message,
    parse_server_message,
    unpack_payload,
)

__all__ = ["AsyncioClient", "AsyncioSubscription", "Event", "Gap", "ServerInfo", "SOCKET_FILE"]

#: Same name as ``p2pchat.rpc.transport.SOCKET_FILE`` (that module needs trio to import).
SOCKET_FILE: Final = "rpc.sock"
_HELLO_ID: Final = 0
_QUEUE: Final = 1024
_READ_SIZE: Final = 65536


_END: Final = object()


def _check_loopback(host: str) -> None:
    """TCP only to a loopback IP literal: the token travels in clear, and the node only
    listens there anyway, so a typo in a host name must not send it across a network."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f"RPC over TCP is loopback only (127.0.0.0/8 or ::1), not {host!r}")


class AsyncioSubscription:
    """Async iterator of :class:`Event` / :class:`Gap`; ``async with`` unsubscribes on exit.

    Items wait in a bounded queue (1,024); while it is full the connection's reader
    waits too (replies to calls included), so consume a subscription in its own task.
    """

    def __init__(
        self,
        client: AsyncioClient,
        types: list[str] | None,
        after_cursor: int | None,
        epoch: str | None,
    ) -> None:
        self._client = client
        self.types = None if types is None else sorted(set(types))
        #: Persist ``(epoch, last_cursor)`` to resume later without loss.
        self.epoch = epoch
        self.last_cursor = after_cursor
        self.server_id: int | None = None
        self._queue: asyncio.Queue[Event | Gap | object] = asyncio.Queue(_QUEUE)
        self._started = False
        self._ended = False
        self._closed = False
        self._error: P2PChatError | None = None

    def __repr__(self) -> str:
        return f"AsyncioSubscription(types={self.types}, last_cursor={self.last_cursor})"

    def _params(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.types is not None:
            out["types"] = self.types
        if self.last_cursor is not None:
            out["after_cursor"] = self.last_cursor
            if self.epoch is not None:
                out["epoch"] = self.epoch
        return out

    def _on_subscribed(self, result: Any) -> None:
        """Runs in the reader when the reply arrives, before any event of this subscription."""
        self.server_id = int(result["sub"])
        self._client._subs[self.server_id] = self
        restarted = self.epoch is not None and result["epoch"] != self.epoch
        self.epoch = str(result["epoch"])
        if self.last_cursor is None:
            self.last_cursor = int(result["last_cursor"])
        elif result["gap"]:
            # The queue is new and empty: this cannot block.
            self._queue.put_nowait(Gap(self.last_cursor, int(result["oldest_cursor"])))
            if restarted:
                self.last_cursor = 0  # the new run numbers its events from 1 again

    async def _deliver(self, msg: EventMessage) -> None:
        if self._ended or (self.last_cursor is not None and msg.cursor <= self.last_cursor):
            return
        self.last_cursor = msg.cursor
        kind = msg.event.get("type")
        await self._queue.put(Event(msg.cursor, kind if isinstance(kind, str) else "", msg.event))

    def _end(self, error: P2PChatError | None) -> None:
        """End the iteration after the queued items; with ``error``, raise it then."""
        if self._ended:
            return
        self._ended = True
        self._error = error
        if not self._queue.full():
            self._queue.put_nowait(_END)
        # else: the consumer drains the queue, then sees _ended on an empty queue

    async def start(self) -> None:
        """Subscribe now (``async with`` and the first ``anext`` call this)."""
        if not self._started:
            self._started = True
            try:
                await self._client._subscribe(self)
            except P2PChatError as exc:
                self._end(exc)  # later anext calls raise it too, instead of waiting forever
                raise

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event | Gap:
        await self.start()
        if self._ended and self._queue.empty():
            item: Event | Gap | object = _END
        else:
            item = await self._queue.get()
        if isinstance(item, Event | Gap):
            return item
        if self._error is not None and not self._closed:
            raise self._error.with_traceback(None)
        raise StopAsyncIteration

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._end(None)
        await self._client._unsubscribe(self)


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[Any]
    on_result: Callable[[Any], None] | None = None
    page: bool = False


class AsyncioClient:
    """One authenticated RPC connection, driven by asyncio (see the module docstring)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        where: str,
        max_frame: int,
        call_timeout: float,
    ) -> None:
        """Use :meth:`connect`."""
        self._reader = reader
        self._writer = writer
        self._where = where
        self._max_frame = max_frame
        self._call_timeout = call_timeout
        self._decoder = FrameDecoder(max_frame=max_frame)
        self._ids = itertools.count(_HELLO_ID + 1)
        self._pending: dict[int, _Pending] = {}
        self._subs: dict[int, AsyncioSubscription] = {}
        self._lost: P2PChatError | None = None
        self._closed = False
        self._reader_task: asyncio.Task[None] | None = None
        self.info: ServerInfo | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "lost" if self._lost else "open"
        return f"AsyncioClient({self._where!r}, {state})"  # never the token

    @classmethod
    async def connect(
        cls,
        *,
        home: Path | str | None = None,
        token: str | None = None,
        tcp: tuple[str, int] | None = None,
        client_name: str = "p2pchat-asyncio",
        max_frame: int = MAX_FRAME,
        connect_timeout: float = 10.0,
        call_timeout: float = 30.0,
    ) -> AsyncioClient:
        """Connect (unix socket in ``home``, or loopback ``tcp``) and authenticate.

        ``token`` defaults to the admin token in ``home``. ``connect_timeout`` bounds
        connecting and the hello; ``call_timeout`` each later call (for a tighter bound
        on one call, wrap it in ``asyncio.timeout``). Raises the server's error
        (:class:`~p2pchat.rpc.errors.AuthenticationError`, ...) or NetworkError.
        """
        home_path = Path(home) if home is not None else None
        if tcp is None and home_path is None:
            raise LocalProtocolError("pass home= (unix socket) or tcp=(host, port)")
        if token is None:
            if home_path is None:
                raise LocalProtocolError("pass token= when connecting over TCP without home=")
            token = read_admin_token(home_path)
        if tcp is not None:
            _check_loopback(tcp[0])
            where = f"{tcp[0]}:{tcp[1]}"
        else:
            assert home_path is not None
            where = str(home_path / SOCKET_FILE)
        try:
            async with asyncio.timeout(connect_timeout):
                if tcp is not None:
                    reader, writer = await asyncio.open_connection(*tcp)
                else:
                    reader, writer = await asyncio.open_unix_connection(where)
        except TimeoutError:
            raise NetworkError(f"connecting to the node at {where} timed out") from None
        except OSError as exc:
            raise NetworkError(f"cannot connect to the node at {where}: {exc.strerror}") from None
        client = cls(reader, writer, where=where, max_frame=max_frame, call_timeout=call_timeout)
        try:
            await client._hello(token, client_name, connect_timeout)
        except BaseException:
            writer.close()
            raise
        client._reader_task = asyncio.get_running_loop().create_task(client._read_loop())
        return client

    # -- frames -----------------------------------------------------------------------

    async def _send(self, request: Request) -> None:
        self._writer.write(encode_frame(encode_message(request), max_frame=self._max_frame))
        try:
            await self._writer.drain()
        except ConnectionError as exc:
            raise NetworkError("the RPC connection is closed") from exc

    async def _next_message(self) -> ServerMessage | None:
        while True:
            payload = self._decoder.next_frame()
            if payload is not None:
                return parse_server_message(unpack_payload(payload))
            try:
                data = await self._reader.read(_READ_SIZE)
            except ConnectionError:
                return None
            if not data:
                return None
            self._decoder.feed(data)

    async def _hello(self, token: str, client_name: str, limit: float) -> None:
        params = {
            "versions": [PROTOCOL_VERSION_MIN, PROTOCOL_VERSION_MAX],
            "token": token,
            "client": client_name,
        }
        try:
            async with asyncio.timeout(limit):
                await self._send(Request(_HELLO_ID, "rpc.hello", params))
                msg = await self._next_message()
        except TimeoutError:
            raise NetworkError("the node did not answer rpc.hello in time") from None
        except WireError as exc:
            raise NetworkError(f"the node sent a malformed frame ({exc.reason})") from None
        if isinstance(msg, ErrorResponse | Close):
            raise exception_for(msg.error.code, msg.error.message, msg.error.data)
        if not isinstance(msg, Response) or msg.id != _HELLO_ID:
            raise NetworkError("the server closed the connection during rpc.hello")
        self.info = server_info(msg.result)

    async def _read_loop(self) -> None:
        """Dispatch frames until the connection ends; then fail what still waits."""
        reason: P2PChatError = NetworkError("the node closed the RPC connection")
        try:
            while True:
                msg = await self._next_message()
                if msg is None:
                    break
                if isinstance(msg, EventMessage):
                    sub = self._subs.get(msg.sub)
                    if sub is not None:
                        await sub._deliver(msg)
                elif isinstance(msg, Close):
                    reason = exception_for(msg.error.code, msg.error.message, msg.error.data)
                    break
                elif msg.id is not None:
                    self._resolve(msg)
        except WireError as exc:
            reason = NetworkError(f"the node sent a malformed frame ({exc.reason})")
        finally:
            if self._closed:
                reason = ClosedError("the client is closed")
            self._lose(reason)

    def _resolve(self, msg: Response | ErrorResponse) -> None:
        assert msg.id is not None
        pending = self._pending.pop(msg.id, None)
        if pending is None or pending.future.done():
            return  # a reply to a call that timed out or was cancelled
        if isinstance(msg, ErrorResponse):
            error = exception_for(msg.error.code, msg.error.message, msg.error.data)
            pending.future.set_exception(error)
            return
        if pending.on_result is not None:
            try:
                pending.on_result(msg.result)
            except (KeyError, TypeError, ValueError):
                pending.future.set_exception(NetworkError("the node sent a malformed result"))
                return
        pending.future.set_result(Page(msg.result, msg.next) if pending.page else msg.result)

    def _lose(self, reason: P2PChatError) -> None:
        if self._lost is None:
            self._lost = reason
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(reason)
        self._pending.clear()
        for sub in list(self._subs.values()):
            sub._end(reason)
        self._subs.clear()
        self._writer.close()

    # -- public API -------------------------------------------------------------------

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Call ``method``; raises the same ``p2pchat.errors`` class the handler raised.

        A call without a reply within ``call_timeout`` raises NetworkError; the node may
        still have run it (calls are not retried: they need not be idempotent).
        """
        return await self._request(method, params or {})

    async def call_page(self, method: str, params: dict[str, Any] | None = None) -> Page:
        """Like :meth:`call`, with the ``next`` params a result cut to fit one frame
        carries (``None`` when it is whole): call again with ``{**params, **page.next}``."""
        page: Page = await self._request(method, params or {}, page=True)
        return page

    async def _request(
        self,
        method: str,
        params: dict[str, Any],
        *,
        on_result: Callable[[Any], None] | None = None,
        page: bool = False,
    ) -> Any:
        if self._closed:
            raise ClosedError("the client is closed")
        if self._lost is not None:
            raise self._lost.with_traceback(None)
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = _Pending(future, on_result, page)
        try:
            async with asyncio.timeout(self._call_timeout):
                await self._send(Request(request_id, method, params))
                return await future
        except TimeoutError:
            raise NetworkError(f"{method} got no reply in time") from None
        finally:
            self._pending.pop(request_id, None)

    def subscribe(
        self,
        types: list[str] | None = None,
        *,
        after_cursor: int | None = None,
        epoch: str | None = None,
    ) -> AsyncioSubscription:
        """Events of ``types`` (all if ``None``), resuming after ``after_cursor`` if given.

        Use it as ``async with client.subscribe([...]) as events: async for item in
        events``; pass the ``epoch`` the cursor came from when resuming in a new process.
        """
        if types is not None and not types:
            raise LocalProtocolError("types must be None (all events) or non-empty")
        return AsyncioSubscription(self, types, after_cursor, epoch)

    async def _subscribe(self, sub: AsyncioSubscription) -> None:
        await self._request("events.subscribe", sub._params(), on_result=sub._on_subscribed)

    async def _unsubscribe(self, sub: AsyncioSubscription) -> None:
        sub_id, sub.server_id = sub.server_id, None
        if sub_id is None or self._subs.pop(sub_id, None) is None:
            return
        if self._lost is None and not self._closed:
            # NetworkError/ClosedError: the connection went away, and the subscription too.
            with contextlib.suppress(NetworkError, ClosedError):
                await self._request("events.unsubscribe", {"sub": sub_id})

    async def aclose(self) -> None:
        """Close the connection; calls waiting fail with ClosedError. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._lose(ClosedError("the client is closed"))
        if self._reader_task is not None:
            self._reader_task.cancel()
            try:
                await self._reader_task
            except asyncio.CancelledError:
                if (task := asyncio.current_task()) is not None and task.cancelling():
                    raise  # we are being cancelled ourselves, not just our reader
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

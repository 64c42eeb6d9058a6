"""One client connection to a node's RPC socket: hello, request/response matching, frames.

:class:`p2pchat.client.Client` owns at most one of these at a time and replaces it when
the node restarts or drops us; this class knows nothing about reconnecting.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio

from p2pchat.client._types import Page, ServerInfo, server_info
from p2pchat.errors import NetworkError, P2PChatError, WireError
from p2pchat.protocol.framing import MAX_FRAME, FrameDecoder, encode_frame
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

__all__ = ["ServerInfo", "Connection", "open_connection"]


_HELLO_ID: Final = 0


@dataclass(slots=True)
class _Pending:
    done: trio.Event = field(default_factory=trio.Event)
    result: Any = None
    error: P2PChatError | None = None
    on_result: Callable[[Any], None] | None = None
    next: dict[str, Any] | None = None


class Connection:
    """A connected, authenticated stream; :meth:`read_loop` must run for requests to finish."""

    def __init__(self, stream: trio.abc.Stream, *, max_frame: int) -> None:
        self._stream = stream
        self._max_frame = max_frame
        self._decoder = FrameDecoder(max_frame=max_frame)
        self._send_lock = trio.StrictFIFOLock()
        self._ids = itertools.count(_HELLO_ID + 1)
        self._pending: dict[int, _Pending] = {}
        self._lost: P2PChatError | None = None
        self.info: ServerInfo | None = None

    async def _send(self, request: Request) -> None:
        frame = encode_frame(encode_message(request), max_frame=self._max_frame)
        async with self._send_lock:
            try:
                await self._stream.send_all(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise NetworkError("the RPC connection is closed") from exc

    async def _next_message(self) -> ServerMessage | None:
        while True:
            payload = self._decoder.next_frame()
            if payload is not None:
                return parse_server_message(unpack_payload(payload))
            try:
                data = await self._stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            if not data:
                return None
            self._decoder.feed(data)

    async def hello(self, *, token: str, client_name: str) -> ServerInfo:
        params = {
            "versions": [PROTOCOL_VERSION_MIN, PROTOCOL_VERSION_MAX],
            "token": token,
            "client": client_name,
        }
        await self._send(Request(_HELLO_ID, "rpc.hello", params))
        msg = await self._next_message()
        if isinstance(msg, ErrorResponse):
            raise exception_for(msg.error.code, msg.error.message, msg.error.data)
        if isinstance(msg, Close):
            raise exception_for(msg.error.code, msg.error.message, msg.error.data)
        if not isinstance(msg, Response) or msg.id != _HELLO_ID:
            raise NetworkError("the server closed the connection during rpc.hello")
        self.info = server_info(msg.result)
        return self.info

    async def request(
        self,
        method: str,
        params: dict[str, Any],
        *,
        on_result: Callable[[Any], None] | None = None,
        page: bool = False,
    ) -> Any:
        """Send a request and wait for its reply; ``on_result`` runs in the reader, in order.

        With ``page``, a :class:`Page` (the result and the response's ``next``).
        """
        if self._lost is not None:
            raise self._lost
        request_id = next(self._ids)
        pending = _Pending(on_result=on_result)
        self._pending[request_id] = pending
        try:
            await self._send(Request(request_id, method, params))
            await pending.done.wait()
        finally:
            self._pending.pop(request_id, None)
        if pending.error is not None:
            raise pending.error
        return Page(pending.result, pending.next) if page else pending.result

    async def read_loop(self, on_event: Callable[[EventMessage], Awaitable[None]]) -> None:
        """Dispatch frames until the connection ends; pending requests then fail."""
        reason: P2PChatError = NetworkError("the node closed the RPC connection")
        try:
            while True:
                msg = await self._next_message()
                if msg is None:
                    break
                if isinstance(msg, EventMessage):
                    await on_event(msg)
                elif isinstance(msg, Close):
                    reason = exception_for(msg.error.code, msg.error.message, msg.error.data)
                    break
                elif msg.id is not None and msg.id in self._pending:
                    self._resolve(self._pending[msg.id], msg)
        except WireError as exc:
            reason = NetworkError(f"the node sent a malformed frame ({exc.reason})")
        finally:
            self._lost = reason
            for pending in self._pending.values():
                pending.error = reason
                pending.done.set()
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self._stream)

    @staticmethod
    def _resolve(pending: _Pending, msg: Response | ErrorResponse) -> None:
        if isinstance(msg, ErrorResponse):
            pending.error = exception_for(msg.error.code, msg.error.message, msg.error.data)
        else:
            pending.result = msg.result
            pending.next = msg.next
            if pending.on_result is not None:
                pending.on_result(msg.result)
        pending.done.set()

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self._stream)

    @property
    def lost(self) -> P2PChatError | None:
        return self._lost


async def open_connection(
    *,
    unix_path: Path | None,
    tcp: tuple[str, int] | None,
    token: str,
    client_name: str,
    max_frame: int = MAX_FRAME,
) -> Connection:
    """Connect and authenticate; raises the server's error (e.g. AuthenticationError)."""
    try:
        if tcp is not None:
            stream: trio.abc.Stream = await trio.open_tcp_stream(*tcp)
        else:
            assert unix_path is not None
            stream = await trio.open_unix_socket(str(unix_path))
    except OSError as exc:
        where = f"{tcp[0]}:{tcp[1]}" if tcp else str(unix_path)
        raise NetworkError(f"cannot connect to the node at {where}: {exc.strerror}") from None
    conn = Connection(stream, max_frame=max_frame)
    try:
        await conn.hello(token=token, client_name=client_name)
    except BaseException:
        await conn.aclose()
        raise
    return conn

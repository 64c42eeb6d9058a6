"""The trio RPC client: calls, and event subscriptions that survive reconnects.

::

    async with await Client.connect(home=home) as client:
        await client.call("dm.send", {"to": peer, "text": "hi"})
        async with client.subscribe(types=["dm.received"]) as events:
            async for item in events:      # Event(...) or Gap(...)
                ...

While the client is open a supervisor task keeps one connection alive: when the node
restarts or drops us (``slow-consumer``), calls in flight fail with the reason, new
calls wait up to ``reconnect_timeout`` for the next connection, and every open
subscription is re-made with ``after_cursor`` = the last cursor it received, so no event
is lost or repeated; if the node's log no longer reaches back that far the iterator
yields a :class:`Gap` first. Calls are never retried (they need not be idempotent). If
reconnecting is refused for good (token revoked, no common version), calls and
subscriptions raise that error. A client is used once: it cannot be reopened.

Backpressure: each subscription buffers 1,024 items; when one is full the connection's
reader waits, which also holds back replies to calls, until the consumer catches up or
the node drops the connection as a slow consumer (the subscription then resumes). So
consume each subscription in its own task.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import trio
import trio.lowlevel

from p2pchat.errors import ClosedError, LocalProtocolError, NetworkError, P2PChatError
from p2pchat.protocol.framing import MAX_FRAME
from p2pchat.rpc.auth import read_admin_token
from p2pchat.rpc.errors import AuthenticationError, VersionMismatchError
from p2pchat.rpc.protocol import EventMessage
from p2pchat.rpc.transport import SOCKET_FILE

from ._connection import Connection, ServerInfo, open_connection
from ._types import Event, Gap, Page

__all__ = ["Client", "Subscription", "Event", "Gap"]

_BACKOFF_MIN: Final = 0.05
_BACKOFF_MAX: Final = 2.0
_QUEUE: Final = 1024


class Subscription:
    """An async iterator of :class:`Event` / :class:`Gap`; close it to unsubscribe."""

    def __init__(
        self,
        client: Client,
        types: frozenset[str] | None,
        after_cursor: int | None,
        epoch: str | None,
    ) -> None:
        self._client = client
        self.types = types
        #: Persist ``(epoch, last_cursor)`` to resume in a later process without loss.
        self.epoch = epoch
        self.last_cursor = after_cursor
        self._resume = after_cursor is not None
        self._send, self._recv = trio.open_memory_channel[Event | Gap](_QUEUE)
        self.server_id: int | None = None
        self._started = False
        self._closed = False
        self._pending_gap: Gap | None = None
        self._error: P2PChatError | None = None

    def __repr__(self) -> str:
        return f"Subscription(types={self.types}, last_cursor={self.last_cursor})"

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.types is not None:
            out["types"] = sorted(self.types)
        if self._resume:
            out["after_cursor"] = self.last_cursor or 0
            if self.epoch is not None:
                out["epoch"] = self.epoch
        return out

    def on_subscribed(self, result: Any) -> None:
        """Runs in the reader when the subscribe reply arrives, before any of its events."""
        self.server_id = int(result["sub"])
        self._client._subs_by_id[self.server_id] = self
        self._resume = True
        restarted = self.epoch is not None and result["epoch"] != self.epoch
        self.epoch = str(result["epoch"])
        if self.last_cursor is None:
            self.last_cursor = int(result["last_cursor"])
        elif result["gap"]:
            gap = Gap(self.last_cursor, int(result["oldest_cursor"]))
            if restarted:
                self.last_cursor = 0  # the node's cursors started again
            try:
                self._send.send_nowait(gap)
            except trio.WouldBlock:
                self._pending_gap = gap  # goes out before the next event

    async def deliver(self, msg: EventMessage) -> None:
        if self.last_cursor is not None and msg.cursor <= self.last_cursor:
            return  # already delivered before a reconnect
        self.last_cursor = msg.cursor
        if self._pending_gap is not None:
            await self._send.send(self._pending_gap)
            self._pending_gap = None
        kind = msg.event.get("type")
        await self._send.send(Event(msg.cursor, kind if isinstance(kind, str) else "", msg.event))

    async def start(self) -> None:
        if not self._started:
            self._started = True
            await self._client._subscribe(self)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event | Gap:
        await self.start()
        try:
            return await self._recv.receive()
        except trio.EndOfChannel:
            if self._error is not None and not self._closed:
                raise self._error.with_traceback(None) from None
            raise StopAsyncIteration from None

    def end(self, error: P2PChatError | None) -> None:
        """End the iteration after the queued items; with ``error``, raise it then."""
        self._error = error
        self._send.close()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._client._unsubscribe(self)
        self._send.close()


class Client:
    """A connection to a node's RPC API, kept alive across node restarts (see module doc)."""

    def __init__(
        self,
        conn: Connection,
        *,
        unix_path: Path | None,
        tcp: tuple[str, int] | None,
        token: str,
        client_name: str,
        max_frame: int,
        reconnect_timeout: float,
    ) -> None:
        self._conn: Connection | None = conn
        self._unix_path = unix_path
        self._tcp = tcp
        self._token = token
        self._client_name = client_name
        self._max_frame = max_frame
        self._reconnect_timeout = reconnect_timeout
        self._connected = trio.Event()
        self._connected.set()
        self._subs: set[Subscription] = set()
        self._subs_by_id: dict[int, Subscription] = {}
        self._stack: AsyncExitStack | None = None
        self._fatal: P2PChatError | None = None
        self._state = "new"  # new -> open -> closed
        self.info: ServerInfo = conn.info  # type: ignore[assignment]

    def __repr__(self) -> str:
        where = f"{self._tcp[0]}:{self._tcp[1]}" if self._tcp else str(self._unix_path)
        return f"Client({where!r}, state={self._state})"  # never the token

    @classmethod
    async def connect(
        cls,
        *,
        home: Path | str | None = None,
        token: str | None = None,
        tcp: tuple[str, int] | None = None,
        client_name: str = "p2pchat-client",
        max_frame: int = MAX_FRAME,
        reconnect_timeout: float = 5.0,
    ) -> Client:
        """Connect and authenticate. ``token`` defaults to the admin token in ``home``."""
        home_path = Path(home) if home is not None else None
        if tcp is None and home_path is None:
            raise LocalProtocolError("pass home= (unix socket) or tcp=(host, port)")
        if token is None:
            if home_path is None:
                raise LocalProtocolError("pass token= when connecting over TCP without home=")
            token = read_admin_token(home_path)
        unix_path = home_path / SOCKET_FILE if home_path is not None else None
        conn = await open_connection(
            unix_path=unix_path, tcp=tcp, token=token, client_name=client_name, max_frame=max_frame
        )
        return cls(
            conn,
            unix_path=unix_path,
            tcp=tcp,
            token=token,
            client_name=client_name,
            max_frame=max_frame,
            reconnect_timeout=reconnect_timeout,
        )

    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise LocalProtocolError("a Client can be entered only once")
        self._state = "open"
        stack = AsyncExitStack()
        nursery = await stack.enter_async_context(trio.open_nursery())
        stack.callback(nursery.cancel_scope.cancel)
        nursery.start_soon(self._supervise)
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        return None

    async def aclose(self) -> None:
        if self._state == "closed":
            return
        self._state = "closed"
        self._connected.set()  # wake waiters so they see "closed"
        for sub in list(self._subs):
            sub.end(None)
        if self._conn is not None:
            await self._conn.aclose()
        if self._stack is not None:
            await self._stack.aclose()

    # -- the supervisor ---------------------------------------------------------------

    async def _supervise(self) -> None:
        backoff = _BACKOFF_MIN
        while self._state == "open":
            conn = self._conn
            if conn is None:
                try:
                    conn = await open_connection(
                        unix_path=self._unix_path,
                        tcp=self._tcp,
                        token=self._token,
                        client_name=self._client_name,
                        max_frame=self._max_frame,
                    )
                except (AuthenticationError, VersionMismatchError) as exc:
                    self._fail(exc)  # retrying cannot help: the token or version is wrong now
                    return
                except P2PChatError:  # node down or busy: try again
                    await trio.sleep(backoff)
                    backoff = min(_BACKOFF_MAX, backoff * 2)
                    continue
                assert conn.info is not None
                self.info = conn.info
                self._conn = conn
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read, conn)
                if await self._resubscribe(conn):
                    backoff = _BACKOFF_MIN
                    self._connected.set()
            self._conn = None
            self._subs_by_id.clear()

    async def _read(self, conn: Connection) -> None:
        await conn.read_loop(self._on_event)
        # From here until the next connection is ready, callers wait (see _ready). An
        # unset event is kept: tasks may already be waiting on it.
        if self._connected.is_set():
            self._connected = trio.Event()

    def _fail(self, exc: P2PChatError) -> None:
        self._fatal = exc
        self._connected.set()
        for sub in list(self._subs):
            sub.end(exc)

    async def _resubscribe(self, conn: Connection) -> bool:
        for sub in list(self._subs):
            if sub.server_id is None and not sub._resume:
                continue  # its first subscribe is still on its way
            try:
                await conn.request("events.subscribe", sub.params(), on_result=sub.on_subscribed)
            except NetworkError:
                return False
            except P2PChatError as exc:  # e.g. the token lost the read scope
                self._subs.discard(sub)
                sub.end(exc)
        return True

    async def _on_event(self, msg: EventMessage) -> None:
        sub = self._subs_by_id.get(msg.sub)
        if sub is not None:
            # ClosedResourceError: closed locally; the server hears of it soon.
            with contextlib.suppress(trio.ClosedResourceError):
                await sub.deliver(msg)

    async def _ready(self) -> Connection:
        """The live connection, waiting up to ``reconnect_timeout`` while reconnecting."""
        if self._state == "new":
            raise LocalProtocolError("use the client inside `async with`")
        with trio.move_on_after(self._reconnect_timeout):
            while True:
                if self._state == "closed":
                    raise ClosedError("the client is closed")
                if self._fatal is not None:
                    raise self._fatal.with_traceback(None)
                conn = self._conn
                if conn is not None and conn.lost is None and self._connected.is_set():
                    return conn
                if conn is not None and conn.lost is not None:
                    # Lost, and the supervisor has not swapped in a fresh event yet.
                    await trio.lowlevel.checkpoint()
                    continue
                await self._connected.wait()
        raise NetworkError("the node is not reachable over RPC")

    # -- public API -------------------------------------------------------------------

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Call ``method``; raises the same ``p2pchat.errors`` class the handler raised."""
        conn = await self._ready()
        return await conn.request(method, params or {})

    async def call_page(self, method: str, params: dict[str, Any] | None = None) -> Page:
        """Like :meth:`call`, with the ``next`` params a result cut to fit one frame
        carries (``None`` when it is whole): call again with ``{**params, **page.next}``."""
        conn = await self._ready()
        page: Page = await conn.request(method, params or {}, page=True)
        return page

    def subscribe(
        self,
        types: list[str] | None = None,
        *,
        after_cursor: int | None = None,
        epoch: str | None = None,
    ) -> Subscription:
        """Events of ``types`` (all if ``None``), resuming after ``after_cursor`` if given.

        Pass the ``epoch`` the cursor came from (``Subscription.epoch``) when resuming
        in a new process: if the node restarted since, the reply says ``gap`` instead
        of silently replaying the new run's events from the same number.
        """
        kinds = None if types is None else frozenset(types)
        return Subscription(self, kinds, after_cursor, epoch)

    async def _subscribe(self, sub: Subscription) -> None:
        conn = await self._ready()
        self._subs.add(sub)
        try:
            await conn.request("events.subscribe", sub.params(), on_result=sub.on_subscribed)
        except P2PChatError:
            self._subs.discard(sub)
            raise

    async def _unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)
        sub_id, sub.server_id = sub.server_id, None
        if sub_id is None:
            return
        self._subs_by_id.pop(sub_id, None)
        conn = self._conn
        if conn is not None and conn.lost is None and self._state == "open":
            try:
                with trio.move_on_after(self._reconnect_timeout):
                    await conn.request("events.unsubscribe", {"sub": sub_id})
            except P2PChatError:
                pass  # the connection went away: the subscription went with it

    async def iter_events(
        self,
        types: list[str] | None = None,
        *,
        after_cursor: int | None = None,
        epoch: str | None = None,
    ) -> AsyncGenerator[Event | Gap, None]:
        """Generator form of :meth:`subscribe` (unsubscribes when the loop exits)."""
        async with self.subscribe(types, after_cursor=after_cursor, epoch=epoch) as sub:
            async for item in sub:
                yield item

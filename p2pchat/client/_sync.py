"""A blocking facade over :class:`Client` for scripts and the CLI.

The caller never sees trio: a daemon thread runs ``trio.run`` with a connected
:class:`Client`, and each method hands a coroutine to it through
``trio.from_thread.run`` and blocks for the result. Exceptions are the same
``p2pchat.errors`` classes the async client raises.

::

    with SyncClient.connect(home=home) as client:
        client.call("dm.send", {"to": peer, "text": "hi"})
        for item in client.subscribe(["dm.received"]):
            ...
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import trio

from p2pchat.errors import ClosedError, NetworkError

from ._connection import ServerInfo
from ._trio import Client, Event, Gap, Subscription
from ._types import Page

__all__ = ["SyncClient", "SyncSubscription"]


class SyncSubscription:
    """A blocking iterator of :class:`Event` / :class:`Gap`; ``close()`` unsubscribes."""

    def __init__(self, owner: SyncClient, sub: Subscription) -> None:
        self._owner = owner
        self._sub = sub

    def __iter__(self) -> Iterator[Event | Gap]:
        return self

    def __next__(self) -> Event | Gap:
        return self.next(timeout=None)

    def next(self, *, timeout: float | None) -> Event | Gap:
        """The next item; ``TimeoutError`` if none arrives within ``timeout`` seconds."""
        try:
            item: Event | Gap = self._owner._run(self._sub.__anext__, timeout=timeout)
            return item
        except StopAsyncIteration:
            raise StopIteration from None

    @property
    def last_cursor(self) -> int | None:
        return self._sub.last_cursor

    @property
    def epoch(self) -> str | None:
        return self._sub.epoch

    def close(self) -> None:
        self._owner._run(self._sub.aclose, timeout=None)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyncClient:
    """Blocking RPC client (see module doc). Create with :meth:`connect`; close once."""

    def __init__(self) -> None:
        self._token: trio.lowlevel.TrioToken | None = None
        self._client: Client | None = None
        self._stop: trio.Event | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"SyncClient({self._client!r})"

    @classmethod
    def connect(
        cls,
        *,
        home: Path | str | None = None,
        token: str | None = None,
        tcp: tuple[str, int] | None = None,
        client_name: str = "p2pchat-sync-client",
        reconnect_timeout: float = 5.0,
    ) -> SyncClient:
        """Connect and authenticate (blocking); raises like :meth:`Client.connect`."""
        self = cls()
        ready: queue.Queue[BaseException | None] = queue.Queue(maxsize=1)

        async def main() -> None:
            try:
                client = await Client.connect(
                    home=home,
                    token=token,
                    tcp=tcp,
                    client_name=client_name,
                    reconnect_timeout=reconnect_timeout,
                )
            except Exception as exc:  # noqa: BLE001 - handed to the caller, who raises it
                ready.put(exc)
                return
            async with client:
                self._client = client
                self._token = trio.lowlevel.current_trio_token()
                self._stop = trio.Event()
                ready.put(None)
                await self._stop.wait()

        self._thread = threading.Thread(
            target=trio.run, args=(main,), name="p2pchat-rpc-client", daemon=True
        )
        self._thread.start()
        error = ready.get()
        if error is not None:
            self._thread.join()
            raise error
        return self

    def _run(self, fn: Any, *args: Any, timeout: float | None) -> Any:
        token = self._token
        if token is None:
            raise ClosedError("the client is closed")

        async def bounded() -> Any:
            if timeout is None:
                return await fn(*args)
            with trio.move_on_after(timeout):
                return await fn(*args)
            raise TimeoutError(f"no answer within {timeout} s")

        try:
            return trio.from_thread.run(bounded, trio_token=token)
        except trio.RunFinishedError:
            raise NetworkError("the client's event loop has stopped") from None

    @property
    def info(self) -> ServerInfo:
        if self._client is None:
            raise ClosedError("the client is closed")
        return self._client.info

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        """Call ``method`` and block for its result (or its ``p2pchat.errors`` exception)."""
        client = self._client
        if client is None:
            raise ClosedError("the client is closed")
        return self._run(client.call, method, params, timeout=timeout)

    def call_page(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Page:
        """:meth:`call` with the ``next`` params of a cut result (see ``Client.call_page``)."""
        client = self._client
        if client is None:
            raise ClosedError("the client is closed")
        page: Page = self._run(client.call_page, method, params, timeout=timeout)
        return page

    def subscribe(
        self,
        types: list[str] | None = None,
        *,
        after_cursor: int | None = None,
        epoch: str | None = None,
    ) -> SyncSubscription:
        """Subscribe now (blocking); iterate the result for events. See Client.subscribe."""
        client = self._client
        if client is None:
            raise ClosedError("the client is closed")
        sub = client.subscribe(types, after_cursor=after_cursor, epoch=epoch)
        self._run(sub.start, timeout=None)
        return SyncSubscription(self, sub)

    def close(self) -> None:
        token, stop, thread = self._token, self._stop, self._thread
        self._token = None
        self._client = None
        if token is not None and stop is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(stop.set, trio_token=token)
        if thread is not None:
            thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

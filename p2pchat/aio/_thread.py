"""A trio context (a node, or several) running in its own thread, for asyncio programs.

See :mod:`p2pchat.aio`. trio is imported only when a thread is started or used, so
importing this module (and :mod:`p2pchat.aio`) stays cheap for apps that only talk RPC.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, cast

from p2pchat.errors import ClosedError, NetworkError

from ._client import SOCKET_FILE

if TYPE_CHECKING:
    import trio

    from p2pchat.config import NodeConfig
    from p2pchat.identity.keystore import UnlockedIdentity
    from p2pchat.node import NetworkOpener, Node

__all__ = ["TrioThread", "NodeThread", "start_trio_thread", "run_node_in_thread"]

T = TypeVar("T")
R = TypeVar("R")


class TrioThread(Generic[T]):
    """Runs ``async with open_context() as value`` in ``trio.run`` on a daemon thread.

    Start it with :func:`start_trio_thread`. ``value`` belongs to that thread: use it
    from others only through :meth:`run` / :meth:`run_sync`, which hop onto the trio
    loop (``trio.from_thread``) and block until done (from asyncio, wrap them in
    ``asyncio.to_thread``). :meth:`stop` cancels and joins, and raises what the trio
    side raised, so a crash in the node is never silent.
    """

    def __init__(
        self, open_context: Callable[[], AbstractAsyncContextManager[T]], *, name: str
    ) -> None:
        self._open = open_context
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._value: T | None = None
        self._entered = False
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._stopped = False

    def __repr__(self) -> str:
        state = "running" if self._thread.is_alive() else "stopped"
        return f"<TrioThread {self._thread.name} {state}>"

    def _main(self) -> None:
        import trio

        try:
            trio.run(self._amain)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread by stop()
            self._error = exc
        finally:
            self._ready.set()

    async def _amain(self) -> None:
        import trio

        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            self._scope = scope
            async with self._open() as value:
                self._value, self._entered = value, True
                self._ready.set()
                await trio.sleep_forever()

    def _start(self, ready_timeout: float) -> None:
        self._thread.start()
        if not self._ready.wait(ready_timeout):
            self.stop()
            raise NetworkError(f"{self._thread.name} did not start within {ready_timeout} s")
        if self._error is not None:
            error, self._error = self._error, None
            self._thread.join()
            raise error

    @property
    def value(self) -> T:
        """What ``open_context()`` yielded (e.g. the :class:`~p2pchat.node.Node`)."""
        if not self._entered or self._stopped:
            raise ClosedError("the trio thread is not running")
        return cast(T, self._value)  # T itself may be None

    def run(self, fn: Callable[..., Awaitable[R]], *args: Any) -> R:
        """Run ``await fn(*args)`` on the trio thread and return its result (blocking)."""
        import trio

        if self._token is None or self._stopped:
            raise ClosedError("the trio thread is not running")
        result: R = trio.from_thread.run(fn, *args, trio_token=self._token)
        return result

    def run_sync(self, fn: Callable[..., R], *args: Any) -> R:
        """Run ``fn(*args)`` on the trio thread (for trio-thread-only sync calls)."""
        import trio

        if self._token is None or self._stopped:
            raise ClosedError("the trio thread is not running")
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def stop(self, timeout: float = 30.0) -> None:
        """Leave the ``async with`` (cancelling the trio side) and join the thread.

        Re-raises whatever the trio side raised while running. Idempotent.
        """
        import trio

        if not self._stopped:
            self._stopped = True
            scope, token = self._scope, self._token
            if scope is not None and token is not None and self._thread.is_alive():
                # RunFinishedError: it ended on its own; its error (if any) is raised below.
                with contextlib.suppress(trio.RunFinishedError):
                    trio.from_thread.run_sync(scope.cancel, trio_token=token)
        if self._thread.ident is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise NetworkError(f"{self._thread.name} did not stop within {timeout} s")
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NodeThread(TrioThread["Node"]):
    """A :class:`~p2pchat.node.Node` running in its own trio thread; RPC at :attr:`home`."""

    def __init__(
        self, open_context: Callable[[], AbstractAsyncContextManager[Node]], *, home: Path
    ) -> None:
        super().__init__(open_context, name="p2pchat-node")
        #: The node home: connect with ``AsyncioClient.connect(home=handle.home)``.
        self.home = home

    @property
    def socket_path(self) -> Path:
        return self.home / SOCKET_FILE


def start_trio_thread(
    open_context: Callable[[], AbstractAsyncContextManager[T]],
    *,
    name: str = "p2pchat-trio",
    ready_timeout: float = 60.0,
) -> TrioThread[T]:
    """Start a :class:`TrioThread`; returns once ``open_context()`` was entered.

    The general form of :func:`run_node_in_thread`, for when the trio side is more than
    one node (tests run two nodes on one in-memory network this way).
    """
    handle = TrioThread(open_context, name=name)
    handle._start(ready_timeout)
    return handle


def run_node_in_thread(
    config: NodeConfig,
    identity: UnlockedIdentity,
    *,
    network: NetworkOpener | None = None,
    ready_timeout: float = 60.0,
) -> NodeThread:
    """Run ``Node(config, identity)`` in a trio thread; returns once it listens.

    With ``config.rpc`` (the default) the thread also serves the node's RPC API on
    ``<config.home>/rpc.sock`` before this returns, so an :class:`AsyncioClient` can
    connect at once. ``network`` is for tests (an in-memory network); by default the
    node opens its libp2p host.
    Call :meth:`NodeThread.stop` (or use ``with``) to shut it down.
    """
    from p2pchat.api.serve import open_api
    from p2pchat.node import Node

    @contextlib.asynccontextmanager
    async def node_with_api() -> AsyncIterator[Node]:
        async with Node(config, identity, network=network) as node, open_api(node):
            yield node

    handle = NodeThread(node_with_api, home=config.home)
    handle._start(ready_timeout)
    return handle

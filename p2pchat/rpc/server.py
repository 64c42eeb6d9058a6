"""The RPC server: listeners, the hello handshake, built-in methods, and event publishing.

::

    registry = Registry()
    ...  # the node registers its methods
    ensure_admin_token(home, rng=os.urandom)  # once, when the home is created
    async with open_rpc_server(
        home=home, registry=registry, node_info={"peer_id": ...}, rng=os.urandom
    ) as server:
        server.publish({"type": "dm.received", "from": peer, "text": text})

``open_rpc_server`` returns once ``<home>/rpc.sock`` (and the optional loopback TCP port)
accept connections; leaving the block closes every connection and removes the socket.
:meth:`RpcServer.publish` must be called from the server's trio thread (the node's own
tasks); it never blocks. ``rng`` names this run's event epoch (see ``rpc.md`` §7).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final

import trio

from p2pchat.rpc.auth import TokenStore
from p2pchat.rpc.config import ServerConfig, ServerStatistics
from p2pchat.rpc.errors import (
    AuthenticationError,
    InvalidParamsError,
    InvalidRequestError,
    VersionMismatchError,
)
from p2pchat.rpc.events import EventLog
from p2pchat.rpc.protocol import (
    PROTOCOL_VERSION_MAX,
    PROTOCOL_VERSION_MIN,
    Response,
    encode_event_body,
    encode_message,
)
from p2pchat.rpc.registry import Registry
from p2pchat.rpc.schema import Bounds, NoParams, ParamsSchema
from p2pchat.rpc.session import Session
from p2pchat.rpc.transport import open_listeners
from p2pchat_crypto.sealed import Rng

__all__ = ["ServerConfig", "ServerStatistics", "RpcServer", "open_rpc_server", "BUILTIN_METHODS"]

log = logging.getLogger("p2pchat.rpc")
_RESOURCE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_ACCEPT_RETRY: Final = 0.1


_ID: Final = Bounds(min=0, max=(1 << 53) - 1)


@dataclass(frozen=True, slots=True)
class _HelloParams:
    versions: Annotated[list[int], Bounds(max_len=2)]
    token: Annotated[str, Bounds(max_len=256)]
    client: Annotated[str | None, Bounds(max_len=128)] = None


@dataclass(frozen=True, slots=True)
class _SubscribeParams:
    types: Annotated[list[str] | None, Bounds(max_len=256)] = None
    after_cursor: Annotated[int | None, _ID] = None
    epoch: Annotated[str | None, Bounds(max_len=64)] = None


@dataclass(frozen=True, slots=True)
class _UnsubscribeParams:
    sub: Annotated[int, _ID]


#: name -> (scope or None for any authenticated connection, params class, one-line doc)
BUILTIN_METHODS: Final[dict[str, tuple[str | None, type[Any], str]]] = {
    "rpc.hello": (None, _HelloParams, "Authenticate and negotiate the protocol version."),
    "rpc.ping": (None, NoParams, "Liveness check; returns {'pong': true}."),
    "rpc.methods": (None, NoParams, "Every method with its scope, params schema and doc."),
    "events.subscribe": ("read", _SubscribeParams, "Subscribe to events, optionally resuming."),
    "events.unsubscribe": ("read", _UnsubscribeParams, "Stop a subscription."),
}
_SCHEMAS: Final = {name: ParamsSchema(spec[1]) for name, spec in BUILTIN_METHODS.items()}


class RpcServer:
    """Owns the listeners, the sessions and the event log; see :func:`open_rpc_server`."""

    def __init__(
        self,
        *,
        home: Path,
        registry: Registry,
        node_info: Mapping[str, Any],
        config: ServerConfig | None = None,
        rng: Rng,
        tokens: TokenStore | None = None,
    ) -> None:
        self.home = home
        self.registry = registry
        self.config = config or ServerConfig()
        self._node_info = dict(node_info)
        encode_message(Response(0, self._node_info))  # fail now, not at the first hello
        self._tokens = tokens or TokenStore(home)
        self._log = EventLog(capacity=self.config.event_log_capacity)
        #: Names this run's cursor sequence: cursors restart with the server, so a cursor
        #: from another epoch says nothing about what the client has seen.
        self.epoch = rng(8).hex()
        self._sessions: set[Session] = set()  # authenticated
        self._pending: dict[Session, None] = {}  # not yet: oldest first
        self.unauthenticated_dropped = 0
        self._published = 0
        self._overflows = 0
        self.unix_path: Path | None = None
        self.tcp_address: tuple[str, int] | None = None

    def __repr__(self) -> str:
        return f"RpcServer(home={str(self.home)!r}, sessions={len(self._sessions)})"

    def statistics(self) -> ServerStatistics:
        return ServerStatistics(
            len(self._sessions), self._published, self._log.last_cursor, self._overflows
        )

    # -- serving ----------------------------------------------------------------------

    @asynccontextmanager
    async def _serve(self) -> AsyncIterator[None]:
        async with open_listeners(self.home, self.config) as (listeners, unix_path, tcp):
            self.unix_path, self.tcp_address = unix_path, tcp
            async with trio.open_nursery() as nursery:
                for listener in listeners:
                    nursery.start_soon(self._accept_loop, listener, nursery)
                try:
                    yield
                finally:
                    nursery.cancel_scope.cancel()

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _RESOURCE_ERRNOS:
                    raise
                # Out of file descriptors or memory: existing clients keep working; new
                # ones wait in the backlog until something frees up.
                log.warning("rpc: accept failed (%s); retrying shortly", errno.errorcode[exc.errno])
                await trio.sleep(_ACCEPT_RETRY)
                continue
            nursery.start_soon(self._serve_one, stream)

    async def _serve_one(self, stream: trio.SocketStream) -> None:
        session = Session(self, stream, config=self.config)
        if len(self._pending) >= self.config.max_unauthenticated:
            # Drop the oldest silent connection, never the newcomer: a client that says
            # hello at once always gets in, however many others connect and say nothing.
            oldest = next(iter(self._pending))
            del self._pending[oldest]
            self.unauthenticated_dropped += 1
            oldest.close_with(AuthenticationError("too many connections without rpc.hello"))
        self._pending[session] = None
        try:
            await session.run()
        finally:
            self._pending.pop(session, None)
            self._sessions.discard(session)

    def admit(self, session: Session) -> bool:
        """A session said a valid hello: count it as a client, if there is room."""
        self._pending.pop(session, None)
        if len(self._sessions) >= self.config.max_connections:
            return False
        self._sessions.add(session)
        return True

    # -- called by sessions -----------------------------------------------------------

    def hello(self, raw: Mapping[str, Any]) -> tuple[dict[str, Any], frozenset[str], str]:
        """Check a hello's params; returns (result, granted scopes, client name)."""
        params: _HelloParams = _SCHEMAS["rpc.hello"].validate(raw)
        scopes = self._tokens.authenticate(params.token)
        if scopes is None:
            raise AuthenticationError("invalid RPC token")
        if len(params.versions) != 2:
            raise InvalidParamsError("versions must be [min, max]")
        low, high = params.versions
        version = min(high, PROTOCOL_VERSION_MAX)
        if version < max(low, PROTOCOL_VERSION_MIN):
            raise VersionMismatchError(
                f"server speaks versions {PROTOCOL_VERSION_MIN}..{PROTOCOL_VERSION_MAX}"
            )
        c = self.config
        result = {
            "version": version,
            "epoch": self.epoch,
            "node": self._node_info,
            "scopes": sorted(scopes),
            "limits": {
                "max_frame": c.max_frame,
                "max_in_flight": c.max_in_flight,
                "max_subscriptions": c.max_subscriptions,
                "event_queue": c.event_queue,
                "rate": c.rate,
            },
        }
        return result, scopes, params.client or ""

    def builtin(
        self, session: Session, name: str
    ) -> Callable[[Mapping[str, Any]], Callable[[], Awaitable[Any]]] | None:
        """A built-in method bound to ``session``, or ``None`` if ``name`` is not one."""
        spec = BUILTIN_METHODS.get(name)
        if spec is None:
            return None
        scope = spec[0]

        def bind(raw: Mapping[str, Any]) -> Callable[[], Awaitable[Any]]:
            if name == "rpc.hello":
                raise InvalidRequestError("rpc.hello was already done on this connection")
            if scope is not None:
                session.require(scope)
            params = _SCHEMAS[name].validate(raw)
            # Run synchronously now (no await) so a subscription and its replay are atomic.
            result = self._run_builtin(session, name, params)

            async def done() -> Any:
                return result

            return done

        return bind

    def _run_builtin(self, session: Session, name: str, params: Any) -> Any:
        if name == "rpc.ping":
            return {"pong": True}
        if name == "rpc.methods":
            out = {
                n: {"scope": s, "params": _SCHEMAS[n].describe(), "doc": d}
                for n, (s, _, d) in BUILTIN_METHODS.items()
            }
            out.update({m.name: m.describe() for m in self.registry})
            return out
        if name == "events.subscribe":
            types = None if params.types is None else frozenset(params.types)
            after = params.after_cursor
            other_epoch = after is not None and params.epoch not in (None, self.epoch)
            replay = self._log.since(0 if other_epoch else after, types)
            sub = session.subscribe(types, replay.events)
            return {
                "sub": sub,
                "epoch": self.epoch,
                "gap": replay.gap or other_epoch,
                "last_cursor": replay.last_cursor,
                "oldest_cursor": self._log.oldest_cursor,
            }
        assert name == "events.unsubscribe"
        session.unsubscribe(params.sub)
        return {}

    # -- publishing -------------------------------------------------------------------

    def publish(self, event: Mapping[str, Any]) -> int:
        """Append an event (a map with a string ``type``) and push it; returns its cursor.

        Raises ``ValueError`` or :class:`~p2pchat.errors.LocalProtocolError` (not
        msgpack-encodable) before anything is recorded: a bad event is the node's bug.
        """
        body = encode_event_body(event)
        logged = self._log.append(event, body=body)
        self._published += 1
        for session in list(self._sessions):
            if not session.deliver(logged):
                self._overflows += 1
                log.info("rpc: dropped slow subscriber %r at cursor %d", session, logged.cursor)
        return logged.cursor


@asynccontextmanager
async def open_rpc_server(
    *,
    home: Path,
    registry: Registry,
    node_info: Mapping[str, Any],
    config: ServerConfig | None = None,
    rng: Rng,
    tokens: TokenStore | None = None,
) -> AsyncIterator[RpcServer]:
    """Run an :class:`RpcServer` for the duration of the block (listening on entry).

    Leaving the block closes every connection and removes ``<home>/rpc.sock``.
    """
    server = RpcServer(
        home=home, registry=registry, node_info=node_info, config=config, rng=rng, tokens=tokens
    )
    async with server._serve():
        yield server

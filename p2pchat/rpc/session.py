"""One client connection: hello, dispatch, subscriptions and the outbound queue.

Two tasks per connection. The *reader* decodes frames and starts one task per request
(at most ``max_in_flight`` at once); the *writer* drains the :class:`_Outbox`, sending
replies before events and coalescing whatever is queued into one write. Replies are
never dropped; live events are bounded per connection (``event_queue``) and when a
subscriber falls that far behind the server sends ``close`` with ``slow-consumer``
(1103) and hangs up: the client reconnects and resumes from its last cursor, so
nothing is lost unless the log itself moved past it (then it is told ``gap: true``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import trio

from p2pchat.errors import (
    LocalProtocolError,
    NotFoundError,
    P2PChatError,
    PermissionDeniedError,
    RateLimitedError,
    WireError,
)
from p2pchat.protocol.framing import FrameDecoder, encode_frame
from p2pchat.rpc.config import ServerConfig, new_bucket
from p2pchat.rpc.errors import (
    AuthenticationError,
    InternalServerError,
    InvalidParamsError,
    InvalidRequestError,
    MethodNotFoundError,
    SlowConsumerError,
    code_for,
)
from p2pchat.rpc.events import LoggedEvent
from p2pchat.rpc.protocol import (
    Close,
    ErrorInfo,
    ErrorResponse,
    Request,
    Response,
    encode_event_frame,
    encode_message,
    parse_request,
    unpack_payload,
)
from p2pchat.rpc.registry import Registry

__all__ = ["Session", "SessionHost", "Subscription"]

log = logging.getLogger("p2pchat.rpc")
_incidents: Final = itertools.count(1)
_WRITE_BATCH: Final = 256 * 1024


@dataclass(slots=True)
class Subscription:
    sub_id: int
    types: frozenset[str] | None

    def wants(self, event: LoggedEvent) -> bool:
        return self.types is None or event.type in self.types


def error_info(exc: BaseException, *, data: Any = None) -> ErrorInfo:
    row = code_for(exc)
    if isinstance(exc, WireError) and data is None:
        data = {"reason": exc.reason}
    return ErrorInfo(row.code, row.name, str(exc) or row.name, data)


class _Outbox:
    """Replies ahead of events. Live events are bounded here; replies by the reader."""

    def __init__(self, *, max_live: int) -> None:
        self.control: deque[bytes] = deque()
        self.events: deque[tuple[Subscription, LoggedEvent, bool]] = deque()
        self.live_pending = 0
        self.max_live = max_live
        self.closing = False  # a final frame is queued: accept nothing more
        self._wakeup = trio.Event()
        self._drained = trio.Event()

    def put_control(self, frame: bytes, *, final: bool = False) -> None:
        if self.closing:
            return
        self.control.append(frame)
        self.closing = final
        self._wakeup.set()

    def put_event(self, sub: Subscription, event: LoggedEvent, *, live: bool) -> bool:
        """Queue an event; ``False`` when the live bound is exceeded (the caller closes)."""
        if self.closing:
            return True
        if live:
            if self.live_pending >= self.max_live:
                return False
            self.live_pending += 1
        self.events.append((sub, event, live))
        self._wakeup.set()
        return True

    async def wait(self) -> None:
        """Wait until there is something to write."""
        if self.control or self.events:
            return
        self._wakeup = trio.Event()
        await self._wakeup.wait()

    async def wait_for_room(self, limit: int) -> None:
        """Hold the reader while ``limit`` replies wait to be written.

        A client that pipelines requests but does not read replies would otherwise make
        us queue replies without bound; stopping reading pushes back through the socket.
        """
        while len(self.control) >= limit and not self.closing:
            self._drained = trio.Event()
            await self._drained.wait()

    def mark_drained(self) -> None:
        self._drained.set()


class SessionHost(Protocol):
    """What a session needs from its server (:class:`~p2pchat.rpc.server.RpcServer`)."""

    @property
    def registry(self) -> Registry: ...

    def hello(self, raw: Mapping[str, Any]) -> tuple[dict[str, Any], frozenset[str], str]: ...

    def admit(self, session: Session) -> bool: ...

    def builtin(
        self, session: Session, name: str
    ) -> Callable[[Mapping[str, Any]], Callable[[], Awaitable[Any]]] | None: ...


class Session:
    """Serves one accepted stream until the peer leaves, breaks a rule, or the server stops."""

    def __init__(self, server: SessionHost, stream: trio.abc.Stream, *, config: ServerConfig):
        self._server = server
        self._stream = stream
        self._config = config
        self._decoder = FrameDecoder(max_frame=config.max_frame)
        self._outbox = _Outbox(max_live=config.event_queue)
        self._scopes: frozenset[str] = frozenset()
        self._in_flight = 0
        self._subs: dict[int, Subscription] = {}
        self._next_sub = 1
        self._bucket = new_bucket(config)
        self._cancel = trio.CancelScope()
        self.client_name = ""

    def __repr__(self) -> str:
        return f"Session(client={self.client_name!r}, subs={len(self._subs)})"

    # -- lifecycle --------------------------------------------------------------------

    async def run(self) -> None:
        try:
            with self._cancel:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer)
                    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                        await self._read_loop(nursery)
                    # The peer is gone or we are closing: let the writer flush a final frame.
                    self._finish()
        finally:
            await trio.aclose_forcefully(self._stream)

    def close_with(self, exc: P2PChatError) -> None:
        """Send ``close`` with this error, then hang up once it is written."""
        frame = encode_frame(encode_message(Close(error_info(exc))))
        self._finish(frame)

    def _finish(self, frame: bytes = b"") -> None:
        """Queue the last frame; a peer that will not read it is cut off after a grace.

        Without the deadline a slow consumer whose socket is full would keep the writer
        blocked, and the connection open, for as long as it pleases.
        """
        self._outbox.put_control(frame, final=True)
        deadline = trio.current_time() + self._config.close_grace
        self._cancel.deadline = min(self._cancel.deadline, deadline)

    async def _writer(self) -> None:
        box = self._outbox
        try:
            while True:
                await box.wait()
                chunks: list[bytes] = []
                size = 0
                while box.control and size < _WRITE_BATCH:
                    frame = box.control.popleft()
                    if frame:
                        chunks.append(frame)
                        size += len(frame)
                final = box.closing and not box.control
                while box.events and size < _WRITE_BATCH and not box.closing:
                    sub, event, live = box.events.popleft()
                    box.live_pending -= live
                    if self._subs.get(sub.sub_id) is sub:
                        frame = encode_frame(
                            encode_event_frame(sub.sub_id, event.cursor, event.body)
                        )
                        chunks.append(frame)
                        size += len(frame)
                if chunks:
                    await self._stream.send_all(b"".join(chunks))
                box.mark_drained()
                if final:
                    self._cancel.cancel()
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._cancel.cancel()

    # -- reading ----------------------------------------------------------------------

    async def _read_loop(self, nursery: trio.Nursery) -> None:
        with trio.move_on_after(self._config.hello_timeout) as hello_scope:
            authed = await self._hello()
        if hello_scope.cancelled_caught:
            self.close_with(AuthenticationError("no rpc.hello in time"))
            return
        if not authed:
            return
        while not self._outbox.closing:
            await self._outbox.wait_for_room(self._config.max_in_flight)
            payload = await self._next_payload()
            if payload is None:
                return
            self._dispatch(payload, nursery)

    async def _next_payload(self) -> bytes | None:
        """The next frame, or ``None`` at end of stream or after a framing error."""
        while True:
            try:
                frame = self._decoder.next_frame()
            except WireError as exc:
                self.close_with(exc)
                return None
            if frame is not None:
                return frame
            data = await self._stream.receive_some(65536)
            if not data:
                return None
            self._decoder.feed(data)

    def _parse(self, payload: bytes) -> Request | None:
        """A valid request, or ``None`` after queueing the error reply."""
        try:
            obj = unpack_payload(payload)
        except WireError as exc:
            self._reply_error(None, exc)
            return None
        try:
            return parse_request(obj)
        except WireError as exc:
            raw_id = obj.get("id")
            ok_id = isinstance(raw_id, int) and not isinstance(raw_id, bool) and raw_id >= 0
            self._reply_error(raw_id if ok_id else None, InvalidRequestError(str(exc)))
            return None

    async def _hello(self) -> bool:
        payload = await self._next_payload()
        if payload is None:
            return False
        request = self._parse(payload)
        if request is None:
            self._finish()
            return False
        if request.method != "rpc.hello":
            self._reply_error(
                request.id, AuthenticationError("the first request must be rpc.hello")
            )
            self._finish()
            return False
        try:
            result, self._scopes, self.client_name = self._server.hello(request.params)
            if not self._server.admit(self):
                raise RateLimitedError("too many RPC connections")
        except P2PChatError as exc:
            self._reply_error(request.id, exc)
            self._finish()
            return False
        self._reply(request.id, result)
        return True

    def _dispatch(self, payload: bytes, nursery: trio.Nursery) -> None:
        request = self._parse(payload)
        if request is None:
            return
        if not self._bucket.take(trio.current_time()):
            self._reply_error(request.id, RateLimitedError("request rate limit exceeded"))
            return
        if self._in_flight >= self._config.max_in_flight:
            limit = self._config.max_in_flight
            self._reply_error(request.id, RateLimitedError(f"more than {limit} requests in flight"))
            return
        self._in_flight += 1
        nursery.start_soon(self._handle, request, name=f"rpc {request.method}")

    async def _handle(self, request: Request) -> None:
        try:
            await self._handle_inner(request)
        finally:
            self._in_flight -= 1

    async def _handle_inner(self, request: Request) -> None:
        pager: Any = None
        try:
            call, pager = self._resolve(request)
            result = await call()
        except P2PChatError as exc:
            self._reply_error(request.id, exc)
            return
        except Exception:  # noqa: BLE001 - logged with traceback in _internal
            # The one boundary where a handler bug must not take the server down: the
            # client gets an incident number, the log gets the traceback.
            self._internal(request, "raised")
            return
        try:
            frame = self._encode(request.id, result)
            if frame is None and pager is not None and isinstance(result, list):
                frame = self._encode_page(request.id, result, pager)
        except LocalProtocolError:
            frame = None
        if frame is None:
            self._internal(request, "returned a result that cannot be sent")
            return
        self._outbox.put_control(frame)

    def _encode(self, request_id: int, result: Any, cursor: Any = None) -> bytes | None:
        """The response frame, or None if it exceeds the frame size."""
        payload = encode_message(Response(request_id, result, cursor))
        try:
            return encode_frame(payload, max_frame=self._config.max_frame)
        except WireError:
            return None

    def _encode_page(self, request_id: int, items: list[Any], pager: Any) -> bytes | None:
        """The most items that fit in one frame (cut at the end the method says), with the
        params that fetch the rest as ``next``."""
        params, method_pager = pager
        keep, next_params = method_pager(params)
        best: bytes | None = None
        low, high = 1, len(items) - 1  # binary search on the number of items kept
        while low <= high:
            n = (low + high) // 2
            page = items[:n] if keep == "first" else items[len(items) - n :]
            beyond = items[n - 1] if keep == "first" else items[len(items) - n]
            frame = self._encode(request_id, page, next_params(beyond, n))
            if frame is None:
                high = n - 1
            else:
                best, low = frame, n + 1
        return best

    def _internal(self, request: Request, what: str) -> None:
        incident = next(_incidents)
        log.exception("rpc method %s %s (incident %d)", request.method, what, incident)
        bug = InternalServerError(f"internal error (incident {incident})")
        self._reply_error(request.id, bug)

    def _resolve(self, request: Request) -> tuple[Callable[[], Awaitable[Any]], Any]:
        """The bound call for ``request`` after scope and params checks (raises
        P2PChatError), and ``(params, pager)`` if the method's results can be cut."""
        builtin = self._server.builtin(self, request.method)
        if builtin is not None:
            return builtin(request.params), None
        method = self._server.registry.get(request.method)
        if method is None:
            raise MethodNotFoundError(f"no method {request.method!r}")
        self.require(method.scope)
        params = method.schema.validate(request.params)
        pager = None if method.pager is None else (params, method.pager)
        return (lambda: method.handler(params)), pager

    def require(self, scope: str) -> None:
        if scope not in self._scopes and "admin" not in self._scopes:
            raise PermissionDeniedError(f"this token lacks the {scope!r} scope")

    # -- replies and events -----------------------------------------------------------

    def _reply(self, request_id: int, result: Any) -> None:
        self._outbox.put_control(encode_frame(encode_message(Response(request_id, result))))

    def _reply_error(self, request_id: int | None, exc: P2PChatError) -> None:
        msg = ErrorResponse(request_id, error_info(exc))
        self._outbox.put_control(encode_frame(encode_message(msg)))

    def subscribe(self, types: frozenset[str] | None, replay: list[LoggedEvent]) -> int:
        if len(self._subs) >= self._config.max_subscriptions:
            limit = self._config.max_subscriptions
            raise RateLimitedError(f"more than {limit} subscriptions on one connection")
        if types is not None and not types:
            raise InvalidParamsError("types must be absent or non-empty")
        sub = Subscription(self._next_sub, types)
        self._next_sub += 1
        self._subs[sub.sub_id] = sub
        for event in replay:
            self._outbox.put_event(sub, event, live=False)
        return sub.sub_id

    def unsubscribe(self, sub_id: int) -> None:
        if self._subs.pop(sub_id, None) is None:
            raise NotFoundError(f"no subscription {sub_id}")

    def deliver(self, event: LoggedEvent) -> bool:
        """Push a live event to matching subscriptions; ``False`` if this session overflowed."""
        for sub in self._subs.values():
            if sub.wants(event) and not self._outbox.put_event(sub, event, live=True):
                self._subs.clear()
                self.close_with(SlowConsumerError("event queue overflow: resume from your cursor"))
                return False
        return True

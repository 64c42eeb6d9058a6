"""The RPC wire format, sans-IO: strict msgpack messages inside varint-length frames.

The node's control socket speaks this with the CLI and with any other local app, in any
language, so the codec is deliberately small and strict: every frame holds exactly one
msgpack map with a ``"type"`` discriminator, and every field is type-checked here, once,
before the server or the client look at it. Input that fails raises :class:`WireError`
with a stable ``reason`` slug (see ``protocol-spec/rpc.md``).

Frames (payloads of :mod:`p2pchat.protocol.framing`)::

    client -> server   {"type": "request",  "id": int, "method": str, "params": map}
    server -> client   {"type": "response", "id": int, "result": any, ?"next": map}
                       {"type": "response", "id": int | nil, "error": ERROR}
                       {"type": "event",    "sub": int, "cursor": int, "event": map}
                       {"type": "close",    "error": ERROR}      (then the server hangs up)
    ERROR = {"code": int, "name": str, "message": str, ?"data": any}

Why strict: the socket is local but any process of the user may connect, and a lenient
decoder (duplicate keys, ext types, trailing bytes, bytes-vs-str keys) lets two
implementations disagree about what a frame means.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

import msgpack  # no stubs; see report

from p2pchat.errors import LocalProtocolError, WireError

__all__ = [
    "PROTOCOL_VERSION_MIN",
    "PROTOCOL_VERSION_MAX",
    "DecodeLimits",
    "ErrorInfo",
    "Request",
    "Response",
    "ErrorResponse",
    "EventMessage",
    "Close",
    "ServerMessage",
    "Message",
    "unpack_payload",
    "parse_request",
    "parse_server_message",
    "encode_message",
    "encode_event_body",
    "encode_event_frame",
]

#: Protocol versions this implementation speaks (negotiated by ``rpc.hello``).
PROTOCOL_VERSION_MIN: Final = 1
PROTOCOL_VERSION_MAX: Final = 1

_MAX_DEPTH: Final = 32
_INT_MIN: Final = -(1 << 63)
_INT_MAX: Final = (1 << 64) - 1
_ID_MAX: Final = (1 << 53) - 1  # safe in every language's number type (JavaScript)


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodeLimits:
    """Caps applied while decoding one payload (on top of the frame size cap)."""

    max_str_len: int = 1 << 20
    max_bin_len: int = 1 << 20
    max_array_len: int = 10_000
    max_map_len: int = 10_000
    max_depth: int = _MAX_DEPTH


_DEFAULT_LIMITS: Final = DecodeLimits()


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """The ``error`` member of a response or close frame."""

    code: int
    name: str
    message: str
    data: Any = None


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    method: str
    params: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        # Params may hold a token (``rpc.hello``) or message text: never in logs.
        return f"Request(id={self.id}, method={self.method!r}, params=<{len(self.params)} keys>)"


@dataclass(frozen=True, slots=True)
class Response:
    """A result. ``next``: the result (a list) was cut to fit one frame; call the same
    method again with these params merged in for the rest."""

    id: int
    result: Any
    next: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """An error reply; ``id`` is ``None`` when the request's id could not be read."""

    id: int | None
    error: ErrorInfo


@dataclass(frozen=True, slots=True)
class EventMessage:
    sub: int
    cursor: int
    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Close:
    """The server's last word before it hangs up (auth failure, overflow, bad framing…)."""

    error: ErrorInfo


ServerMessage = Response | ErrorResponse | EventMessage | Close
Message = Request | ServerMessage


def _fail(reason: str, detail: str = "") -> NoReturn:
    raise WireError(reason, detail)


def _no_ext(code: int, data: bytes) -> NoReturn:
    _fail("ext-type", f"msgpack ext type {code} is not allowed")


def _pairs_to_dict(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for key, value in pairs:
        if not isinstance(key, str):
            _fail("bad-key", "map keys must be strings")
        if key in out:
            _fail("duplicate-key", "a map key appears twice")
        out[key] = value
    return out


def _check_value(value: Any, depth: int, limits: DecodeLimits) -> None:
    """Reject what msgpack accepted but we do not (timestamps, huge ints, deep nesting)."""
    if value is None or isinstance(value, bool | str | bytes | float):
        return
    if isinstance(value, list | dict) and depth >= limits.max_depth:
        _fail("too-deep", f"more than {limits.max_depth} nested containers")
    if isinstance(value, msgpack.Timestamp):  # ext -1 is decoded without ext_hook
        _fail("ext-type", "msgpack timestamps are not allowed")
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:  # pragma: no cover - msgpack cannot encode these
            _fail("bad-int")
        return
    if isinstance(value, list):
        for item in value:
            _check_value(item, depth + 1, limits)
        return
    if isinstance(value, dict):
        for item in value.values():
            _check_value(item, depth + 1, limits)
        return
    _fail("bad-type", f"msgpack value of type {type(value).__name__} is not allowed")


def unpack_payload(payload: bytes, *, limits: DecodeLimits = _DEFAULT_LIMITS) -> dict[str, Any]:
    """Strictly decode one frame payload into a map with string keys.

    Raises :class:`WireError` for anything but exactly one well-formed msgpack map:
    ``"bad-msgpack"``, ``"trailing-bytes"``, ``"ext-type"``, ``"bad-key"``,
    ``"duplicate-key"``, ``"too-deep"``, ``"bad-type"``, ``"not-a-map"``.
    """
    try:
        value = msgpack.unpackb(
            payload,
            raw=False,
            use_list=True,
            strict_map_key=True,
            object_pairs_hook=_pairs_to_dict,
            ext_hook=_no_ext,
            max_str_len=limits.max_str_len,
            max_bin_len=limits.max_bin_len,
            max_array_len=limits.max_array_len,
            max_map_len=limits.max_map_len,
            max_ext_len=64,  # so that ext frames reach _no_ext and get a precise reason
        )
    except WireError:
        raise
    except msgpack.ExtraData:
        _fail("trailing-bytes", "data after the msgpack value")
    except (ValueError, msgpack.UnpackException, RecursionError) as exc:
        # ValueError covers truncated input, invalid UTF-8, limits and non-str keys.
        raise WireError("bad-msgpack", type(exc).__name__) from None
    _check_value(value, 0, limits)
    if not isinstance(value, dict):
        _fail("not-a-map", "a frame holds one msgpack map")
    return value


def _get(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in obj:
        _fail("missing-field", key)
    value = obj[key]
    if isinstance(value, bool) and kind is not bool:
        _fail("bad-field", f"{key} has the wrong type")
    if not isinstance(value, kind):
        _fail("bad-field", f"{key} has the wrong type")
    return value


def _only(obj: Mapping[str, Any], allowed: frozenset[str]) -> None:
    extra = obj.keys() - allowed
    if extra:
        _fail("unknown-field", ", ".join(sorted(extra)))


def _id(obj: Mapping[str, Any], key: str) -> int:
    value: int = _get(obj, key, int)
    if not 0 <= value <= _ID_MAX:
        _fail("bad-field", f"{key} out of range")
    return value


_REQUEST_KEYS: Final = frozenset({"type", "id", "method", "params"})
_RESPONSE_KEYS: Final = frozenset({"type", "id", "result", "next"})
_ERROR_RESPONSE_KEYS: Final = frozenset({"type", "id", "error"})
_EVENT_KEYS: Final = frozenset({"type", "sub", "cursor", "event"})
_CLOSE_KEYS: Final = frozenset({"type", "error"})
_ERROR_KEYS: Final = frozenset({"code", "name", "message", "data"})


def parse_request(obj: Mapping[str, Any]) -> Request:
    """Validate a decoded client frame (only requests flow client -> server)."""
    kind = _get(obj, "type", str)
    if kind != "request":
        _fail("bad-type-tag", "clients send only requests")
    _only(obj, _REQUEST_KEYS)
    method: str = _get(obj, "method", str)
    if not method or len(method) > 128:
        _fail("bad-field", "method name length")
    params: dict[str, Any] = _get(obj, "params", dict) if "params" in obj else {}
    return Request(_id(obj, "id"), method, params)


def _parse_error(obj: Any) -> ErrorInfo:
    if not isinstance(obj, dict):
        _fail("bad-field", "error must be a map")
    _only(obj, _ERROR_KEYS)
    code: int = _get(obj, "code", int)
    return ErrorInfo(code, _get(obj, "name", str), _get(obj, "message", str), obj.get("data"))


def parse_server_message(obj: Mapping[str, Any]) -> ServerMessage:
    """Validate a decoded server frame (the client side of the codec)."""
    kind = _get(obj, "type", str)
    if kind == "response":
        if "error" in obj:
            _only(obj, _ERROR_RESPONSE_KEYS)
            raw_id = obj.get("id")
            return ErrorResponse(
                None if raw_id is None else _id(obj, "id"), _parse_error(obj["error"])
            )
        _only(obj, _RESPONSE_KEYS)
        if "result" not in obj:
            _fail("missing-field", "result")
        cursor: dict[str, Any] | None = _get(obj, "next", dict) if "next" in obj else None
        return Response(_id(obj, "id"), obj["result"], cursor)
    if kind == "event":
        _only(obj, _EVENT_KEYS)
        return EventMessage(_id(obj, "sub"), _id(obj, "cursor"), _get(obj, "event", dict))
    if kind == "close":
        _only(obj, _CLOSE_KEYS)
        return Close(_parse_error(_get(obj, "error", dict)))
    _fail("bad-type-tag", f"unknown frame type {kind[:32]!r}")


def _error_map(error: ErrorInfo) -> dict[str, Any]:
    out: dict[str, Any] = {"code": error.code, "name": error.name, "message": error.message}
    if error.data is not None:
        out["data"] = error.data
    return out


def _to_map(msg: Message) -> dict[str, Any]:
    match msg:
        case Request():
            return {"type": "request", "id": msg.id, "method": msg.method, "params": msg.params}
        case Response():
            out = {"type": "response", "id": msg.id, "result": msg.result}
            if msg.next is not None:
                out["next"] = msg.next
            return out
        case ErrorResponse():
            return {"type": "response", "id": msg.id, "error": _error_map(msg.error)}
        case EventMessage():
            return {"type": "event", "sub": msg.sub, "cursor": msg.cursor, "event": msg.event}
        case Close():
            return {"type": "close", "error": _error_map(msg.error)}


def encode_message(msg: Message) -> bytes:
    """The msgpack payload of ``msg`` (frame it with ``encode_frame``).

    Raises :class:`LocalProtocolError` if a value cannot be represented (a handler that
    returned a ``datetime``, an int beyond 64 bits…): that is our bug, not the peer's.
    """
    try:
        packed: bytes = msgpack.packb(_to_map(msg), use_bin_type=True, datetime=False)
        return packed
    except (TypeError, ValueError, OverflowError) as exc:
        detail = type(exc).__name__
        raise LocalProtocolError(f"value cannot be encoded as msgpack: {detail}") from None


def encode_event_body(event: Mapping[str, Any]) -> bytes:
    """Encode an event map once, so that each subscriber's frame is a cheap splice."""
    try:
        packed: bytes = msgpack.packb(dict(event), use_bin_type=True, datetime=False)
    except (TypeError, ValueError, OverflowError) as exc:
        detail = type(exc).__name__
        raise LocalProtocolError(f"event cannot be encoded as msgpack: {detail}") from None
    return packed


_EVENT_HEAD: Final = b"\x84" + msgpack.packb("type") + msgpack.packb("event")


def encode_event_frame(sub: int, cursor: int, body: bytes) -> bytes:
    """The payload of ``EventMessage(sub, cursor, event)`` from a pre-encoded event body.

    msgpack is concatenative: a 4-entry map header followed by the key/value encodings
    is exactly what :func:`encode_message` produces for the same message (tested).
    """
    return b"".join(
        (
            _EVENT_HEAD,
            msgpack.packb("sub"),
            msgpack.packb(sub),
            msgpack.packb("cursor"),
            msgpack.packb(cursor),
            msgpack.packb("event"),
            body,
        )
    )

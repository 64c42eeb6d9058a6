"""The one table between exceptions and RPC error codes, used by server and client alike.

The server turns an exception raised by a handler into ``{"code", "name", "message"}``
by walking the exception's class hierarchy until it finds a row here (so a subclass
the table does not list gets its nearest ancestor's code). The client turns a code back
into the same class and raises it, so ``except NotFoundError`` works across the socket.
Codes are stable: never renumber a row, only add rows. Anything not in the table
is an internal error: the client sees ``-32603`` and the server log has the traceback.

RPC-specific errors are subclasses of the p2pchat tree (no parallel hierarchy)::

    LocalProtocolError
    ├── InvalidRequestError        -32600  the frame is not a valid request
    ├── MethodNotFoundError        -32601  no such method
    ├── InvalidParamsError         -32602  params fail the method's schema
    └── VersionMismatchError        1102   no protocol version in common
    P2PChatError
    └── InternalServerError        -32603  a handler bug (see the server log)
    PermissionDeniedError
    └── AuthenticationError         1101   missing or wrong token
    NetworkError
    └── SlowConsumerError           1103   the server dropped a connection that fell behind
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from p2pchat.errors import (
    ClosedError,
    ConfigError,
    CryptoFailure,
    KeystoreError,
    LocalProtocolError,
    NetworkError,
    NotFoundError,
    P2PChatError,
    PeerUnreachableError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitedError,
    StorageError,
    WireError,
)

__all__ = [
    "InvalidRequestError",
    "MethodNotFoundError",
    "InvalidParamsError",
    "InternalServerError",
    "AuthenticationError",
    "VersionMismatchError",
    "SlowConsumerError",
    "ErrorCode",
    "ERROR_TABLE",
    "code_for",
    "exception_for",
]


class InvalidRequestError(LocalProtocolError):
    """The frame was msgpack but not a valid request (wrong fields, hello out of order)."""


class MethodNotFoundError(LocalProtocolError):
    """The method name is not registered on this node."""


class InvalidParamsError(LocalProtocolError):
    """The params do not match the method's schema (unknown, missing, wrong type, range)."""


class InternalServerError(P2PChatError):
    """The server failed while handling the request; details are only in its log."""


class AuthenticationError(PermissionDeniedError):
    """The connection did not present a valid token."""


class VersionMismatchError(LocalProtocolError):
    """Client and server share no protocol version."""


class SlowConsumerError(NetworkError):
    """The server disconnected us because our event queue overflowed; resume from the cursor."""


@dataclass(frozen=True, slots=True)
class ErrorCode:
    code: int
    name: str
    exc: type[P2PChatError]


#: Most specific first is not required: lookup walks the exception's MRO.
ERROR_TABLE: Final[tuple[ErrorCode, ...]] = (
    ErrorCode(-32700, "parse-error", WireError),
    ErrorCode(-32600, "invalid-request", InvalidRequestError),
    ErrorCode(-32601, "method-not-found", MethodNotFoundError),
    ErrorCode(-32602, "invalid-params", InvalidParamsError),
    ErrorCode(-32603, "internal-error", InternalServerError),
    ErrorCode(1000, "error", P2PChatError),
    ErrorCode(1001, "not-found", NotFoundError),
    ErrorCode(1002, "permission-denied", PermissionDeniedError),
    ErrorCode(1003, "rate-limited", RateLimitedError),
    ErrorCode(1004, "invalid-argument", ConfigError),
    ErrorCode(1005, "storage-error", StorageError),
    ErrorCode(1006, "network-error", NetworkError),
    ErrorCode(1007, "peer-unreachable", PeerUnreachableError),
    ErrorCode(1008, "crypto-failure", CryptoFailure),
    ErrorCode(1009, "closed", ClosedError),
    ErrorCode(1010, "keystore-error", KeystoreError),
    ErrorCode(1011, "protocol-error", ProtocolError),
    ErrorCode(1012, "local-protocol-error", LocalProtocolError),
    ErrorCode(1101, "unauthenticated", AuthenticationError),
    ErrorCode(1102, "version-mismatch", VersionMismatchError),
    ErrorCode(1103, "slow-consumer", SlowConsumerError),
)

_BY_CLASS: Final = {row.exc: row for row in ERROR_TABLE}
_BY_CODE: Final = {row.code: row for row in ERROR_TABLE}
_INTERNAL: Final = _BY_CODE[-32603]
assert len(_BY_CLASS) == len(_BY_CODE) == len(ERROR_TABLE), "duplicate row"


def code_for(exc: BaseException) -> ErrorCode:
    """The row for ``exc``: its nearest listed ancestor, else internal error."""
    for cls in type(exc).__mro__:
        row = _BY_CLASS.get(cls)
        if row is not None:
            return row
    return _INTERNAL


def exception_for(code: int, message: str, data: Any = None) -> P2PChatError:
    """The exception a client raises for an error reply (unknown codes: the root class)."""
    row = _BY_CODE.get(code)
    if row is None:
        return P2PChatError(f"error {code}: {message}")
    if row.exc is WireError:
        reason = data.get("reason") if isinstance(data, dict) else None
        return WireError(reason if isinstance(reason, str) else "remote", message)
    return row.exc(message)

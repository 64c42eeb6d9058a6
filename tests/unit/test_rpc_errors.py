"""The one error-code table: stable codes, MRO lookup, and the client-side mapping back."""

from __future__ import annotations

import pytest

from p2pchat import errors as e
from p2pchat.rpc import errors as rpc_e
from p2pchat.rpc.errors import ERROR_TABLE, code_for, exception_for


class _CustomNotFound(e.NotFoundError):
    pass


@pytest.mark.parametrize(
    ("exc", "code", "name"),
    [
        (e.NotFoundError("x"), 1001, "not-found"),
        (_CustomNotFound("x"), 1001, "not-found"),
        (e.PermissionDeniedError("x"), 1002, "permission-denied"),
        (rpc_e.AuthenticationError("x"), 1101, "unauthenticated"),
        (e.RateLimitedError("x"), 1003, "rate-limited"),
        (e.WireError("bad-varint"), -32700, "parse-error"),
        (rpc_e.InvalidParamsError("x"), -32602, "invalid-params"),
        (e.WrongPassphraseError("x"), 1010, "keystore-error"),
        (e.P2PChatError("x"), 1000, "error"),
        (ZeroDivisionError(), -32603, "internal-error"),
    ],
)
def test_code_for(exc: BaseException, code: int, name: str) -> None:
    row = code_for(exc)
    assert (row.code, row.name) == (code, name)


@pytest.mark.parametrize("row", ERROR_TABLE, ids=lambda r: r.name)
def test_every_code_maps_back_to_its_class(row: rpc_e.ErrorCode) -> None:
    exc = exception_for(row.code, "msg")
    assert type(exc) is row.exc
    assert code_for(exc).code == row.code


def test_unknown_code_and_wire_reason() -> None:
    exc = exception_for(4242, "future")
    assert type(exc) is e.P2PChatError
    assert "4242" in str(exc)
    wire = exception_for(-32700, "m", {"reason": "bad-msgpack"})
    assert isinstance(wire, e.WireError)
    assert wire.reason == "bad-msgpack"


def test_table_has_unique_codes_and_names() -> None:
    assert len({r.code for r in ERROR_TABLE}) == len(ERROR_TABLE)
    assert len({r.name for r in ERROR_TABLE}) == len(ERROR_TABLE)

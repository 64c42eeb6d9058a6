"""Strict field checks shared by every decoder of this package.

Decoders first parse with the strict CBOR profile, then check the *shape* with these
helpers so that a wrong type or length is always a :class:`DecodeError` with a stable
``reason`` (never an ``IndexError`` or a ``TypeError`` from deep inside the code).
"""

from __future__ import annotations

from typing import Any

from . import cbor
from .errors import DecodeError

__all__ = ["decode_array", "expect_bytes", "expect_int", "expect_optional_int"]


def decode_array(data: bytes, *, length: int, max_size: int, what: str) -> list[Any]:
    """Decode ``data`` as a CBOR array of exactly ``length`` items."""
    value = cbor.decode(data, max_size=max_size)
    return expect_array(value, length=length, what=what)


def expect_array(value: object, *, length: int, what: str) -> list[Any]:
    if not isinstance(value, list) or len(value) != length:
        raise DecodeError("shape", f"{what} must be an array of {length} items")
    return value


def expect_bytes(value: object, *, length: int | None = None, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise DecodeError("type", f"{what} must be a byte string")
    if length is not None and len(value) != length:
        raise DecodeError("length", f"{what} must be {length} bytes")
    return value


def expect_int(value: object, *, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError("type", f"{what} must be an integer")
    if value < minimum:
        raise DecodeError("range", f"{what} must be at least {minimum}")
    return value


def expect_optional_int(value: object, *, what: str, minimum: int = 0) -> int | None:
    return None if value is None else expect_int(value, what=what, minimum=minimum)

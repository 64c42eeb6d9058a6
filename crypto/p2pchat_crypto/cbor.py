"""Strict, deterministic CBOR: the one codec for every byte string p2pchat signs or parses.

Profile (documented in ``protocol-spec/wire.md``, section "CBOR profile"):

* encoding is RFC 8949 section 4.2.1 *core deterministic*: shortest-form integers and
  lengths, definite lengths only, map keys sorted by the bytewise order of their encodings;
* allowed data items: unsigned and negative integers (64-bit range), byte strings, text
  strings, arrays, maps whose keys are integers or text strings, ``false``, ``true``, ``null``;
* rejected: tags, floats, other simple values, indefinite lengths, duplicate keys,
  non-shortest encodings, unsorted keys, trailing bytes, nesting deeper than ``max_depth``;
* the size cap is checked before a single byte is parsed.

:func:`decode` accepts exactly the outputs of :func:`encode`: after parsing it re-encodes
the value and requires the same bytes, so any accepted input is canonical.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NoReturn, TypeAlias

import cbor2

from .errors import DecodeError

__all__ = ["Value", "encode", "decode", "DEFAULT_MAX_DEPTH"]

#: A value of the profile. (Recursive aliases are spelled loosely for mypy's sake.)
Value: TypeAlias = "int | bytes | str | bool | list[Any] | tuple[Any, ...] | dict[Any, Any] | None"

DEFAULT_MAX_DEPTH = 16
_INT_MIN = -(2**64)
_INT_MAX = 2**64 - 1


class _RejectAllTags(Mapping[int, Any]):
    """A semantic-decoder table that claims every tag and refuses it before decoding it."""

    def __getitem__(self, tag: int) -> Any:
        def refuse(_decoder: object) -> NoReturn:
            raise DecodeError("tag", f"CBOR tag {tag} is not allowed")

        return refuse

    def __contains__(self, _tag: object) -> bool:
        return True

    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Iterator[int]:
        return iter(())


_NO_TAGS = _RejectAllTags()


def _refuse_tag(_decoder: object, tag: object) -> NoReturn:
    raise DecodeError("tag", "CBOR tags are not allowed")


def _prepare(value: object, depth: int, max_depth: int) -> object:
    """Check ``value`` against the profile and return it with every map in canonical order.

    Hot: every signed or parsed byte string passes here (a decode re-encodes). Exact
    types are dispatched first and leaves are checked inline, without a call each;
    subclasses (an ``IntEnum``) take the general path below.
    """
    if depth > max_depth:
        raise DecodeError("too-deep", f"nesting deeper than {max_depth}")
    kind = type(value)
    if kind in _LEAVES:
        return value
    if kind is int:
        if not _INT_MIN <= value <= _INT_MAX:  # type: ignore[operator]
            raise DecodeError("int-range", "integer outside the 64-bit CBOR range")
        return value
    if kind is dict:
        return _prepare_map(value, depth, max_depth)  # type: ignore[arg-type]
    if kind is list or kind is tuple:
        out: list[object] = []
        append = out.append
        inline = depth < max_depth  # else the recursive call reports "too-deep"
        for item in value:  # type: ignore[attr-defined]
            item_kind = type(item)
            if inline and (
                item_kind in _LEAVES or (item_kind is int and _INT_MIN <= item <= _INT_MAX)
            ):
                append(item)
            else:
                append(_prepare(item, depth + 1, max_depth))
        return out
    return _prepare_other(value, depth, max_depth)


#: Exact types that are returned as they are.
_LEAVES = frozenset({str, bytes, bool, type(None)})


def _prepare_map(value: dict[Any, Any], depth: int, max_depth: int) -> dict[Any, Any]:
    entries: list[tuple[bytes, Any, Any]] = []
    append = entries.append
    keys = _KEYS
    inline = depth < max_depth  # else the recursive call reports "too-deep"
    for key, item in value.items():
        encoded = keys.get(key) if type(key) is str or type(key) is int else None
        if encoded is None:
            encoded = _key_bytes(key)
        item_kind = type(item)
        if not (
            inline and (item_kind in _LEAVES or (item_kind is int and _INT_MIN <= item <= _INT_MAX))
        ):
            item = _prepare(item, depth + 1, max_depth)
        append((encoded, key, item))
    entries.sort(key=_first)
    return {key: item for _, key, item in entries}


def _first(entry: tuple[bytes, object, object]) -> bytes:
    return entry[0]


def _prepare_other(value: object, depth: int, max_depth: int) -> object:
    """The general path: subclasses of the profile's types, and everything refused."""
    if value is None or isinstance(value, bool | str | bytes):
        return value
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise DecodeError("int-range", "integer outside the 64-bit CBOR range")
        return value
    if isinstance(value, list | tuple):
        return [_prepare(item, depth + 1, max_depth) for item in value]
    if isinstance(value, dict):
        return _prepare_map(value, depth, max_depth)
    raise DecodeError("type", f"{type(value).__name__} is not allowed in the CBOR profile")


#: Encoded map keys. Keys come from a small vocabulary (field names), so each is encoded
#: once, not once per map; bounded, so keys from untrusted input cannot grow it.
_KEYS: dict[int | str, bytes] = {}
_KEYS_MAX = 1024


def _key_bytes(key: object) -> bytes:
    if isinstance(key, bool) or not isinstance(key, int | str):
        raise DecodeError("key-type", "map keys must be integers or text strings")
    if isinstance(key, int) and not _INT_MIN <= key <= _INT_MAX:
        raise DecodeError("int-range", "integer map key outside the 64-bit CBOR range")
    encoded = cbor2.dumps(key)
    if len(_KEYS) < _KEYS_MAX and (type(key) is str or type(key) is int):
        _KEYS[key] = encoded
    return encoded


def encode(value: Value, *, max_depth: int = DEFAULT_MAX_DEPTH) -> bytes:
    """Encode ``value`` deterministically. Raises :class:`DecodeError` for values outside
    the profile (so a caller can never produce bytes its own decoder would refuse)."""
    return cbor2.dumps(_prepare(value, 0, max_depth))


def decode(
    data: bytes, *, max_size: int, max_depth: int = DEFAULT_MAX_DEPTH, recheck: bool = True
) -> Any:
    """Decode untrusted bytes under the strict profile.

    ``max_size`` is checked first. Any violation raises :class:`DecodeError` with a
    ``reason``; nothing else escapes (not even from malformed UTF-8 or huge lengths).
    ``recheck=False`` skips the re-encoding (most of a decode's time), and with it the
    checks made there (canonical form, value types, map key types), for bytes the caller
    itself accepted earlier under this profile (e.g. read back from its own authenticated
    store). Never for bytes from a peer. Tags, indefinite lengths, duplicate keys,
    malformed UTF-8, depth and size are still refused.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("type", "expected bytes")
    data = bytes(data)
    if len(data) > max_size:
        raise DecodeError("too-large", f"{len(data)} bytes exceeds the cap of {max_size}")
    if not data:
        raise DecodeError("truncated", "empty input")
    try:
        value = cbor2.loads(
            data,
            tag_hook=_refuse_tag,
            semantic_decoders=_NO_TAGS,
            max_depth=max_depth + 1,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        )
    except DecodeError:
        raise
    except cbor2.CBORDecodeError as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, DecodeError):
            raise cause from None
        if isinstance(cause, UnicodeDecodeError):
            raise DecodeError("bad-utf8", "text string is not valid UTF-8") from None
        raise DecodeError(_classify(str(exc)), str(exc)) from None
    except UnicodeDecodeError:
        raise DecodeError("bad-utf8", "text string is not valid UTF-8") from None
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        raise DecodeError("malformed", type(exc).__name__) from None
    if not recheck:
        return value
    canonical = encode(value, max_depth=max_depth)
    if canonical != data:
        raise DecodeError(_why_not_canonical(canonical, data), "input is not canonical CBOR")
    return value


def _classify(message: str) -> str:
    text = message.lower()
    for needle, reason in (
        ("indefinite", "indefinite-length"),
        ("duplicate", "duplicate-key"),
        ("depth", "too-deep"),
        ("premature end", "truncated"),
        ("unicode", "bad-utf8"),
        ("utf", "bad-utf8"),
        ("tag", "tag"),
    ):
        if needle in text:
            return reason
    return "malformed"


def _why_not_canonical(canonical: bytes, data: bytes) -> str:
    if len(data) > len(canonical) and data.startswith(canonical):
        return "trailing-bytes"
    return "non-canonical"

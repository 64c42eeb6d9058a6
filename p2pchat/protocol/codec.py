"""The declarative field schema behind every wire message: one place that checks types,
ranges and lengths, converts to and from CBOR values, and writes the CDDL.

Each message class is a frozen, keyword-only dataclass deriving from :class:`Struct`; each
of its fields is declared with :func:`wire` (CBOR map key, a :class:`Spec`, a one-line doc).
From that single declaration come

* :meth:`Struct.from_value`: strict conversion of an already strictly decoded CBOR map
  (every rejection is a :class:`~p2pchat.errors.WireError` with a stable ``reason``);
* :meth:`Struct.to_value`: the CBOR map to encode (deterministically, by
  :func:`p2pchat_crypto.cbor.encode`);
* :func:`cddl_rule`: the CDDL (RFC 8610) rule committed under ``protocol-spec/schemas/``,
  so the prose spec, the schema and the code cannot drift apart.

Forward-compatibility rule (``protocol-spec/README.md``): a map key this version does not
know is *ignored* (never an error), as long as it is a text string; any other key type is
refused. Signatures and hashes always cover the exact received bytes, so ignored fields
stay authenticated and are relayed untouched.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

from p2pchat.errors import WireError
from p2pchat_crypto import cbor
from p2pchat_crypto.errors import DecodeError

__all__ = [
    "MAX_UINT",
    "Spec",
    "UInt",
    "Bool",
    "Bytes",
    "Text",
    "Choice",
    "ListOf",
    "Nested",
    "AnyMap",
    "wire",
    "Struct",
    "WireField",
    "decode_map",
    "encode_value",
    "cddl_rule",
    "struct_closure",
]

#: Integers on the wire stay within JavaScript's safe range so every implementation can
#: hold them in a double or an int64 without loss.
MAX_UINT = 2**53 - 1

S = TypeVar("S", bound="Struct")


def _fail(reason: str, path: str, detail: str) -> WireError:
    return WireError(reason, f"{path}: {detail}" if path else detail)


class Spec:
    """The type of one field: checks a decoded CBOR value and names its CDDL type."""

    def load(self, value: object, path: str) -> Any:
        raise NotImplementedError

    def dump(self, value: Any) -> cbor.Value:
        return value  # type: ignore[no-any-return]

    def cddl(self) -> str:
        raise NotImplementedError

    def children(self) -> Iterator[type[Struct]]:
        return iter(())


@dataclass(frozen=True, slots=True)
class UInt(Spec):
    """An unsigned integer in ``[low, high]``."""

    low: int = 0
    high: int = MAX_UINT

    def load(self, value: object, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail("wrong-type", path, "expected an unsigned integer")
        if not self.low <= value <= self.high:
            raise _fail("out-of-range", path, f"not in [{self.low}, {self.high}]")
        return value

    def cddl(self) -> str:
        if self.low == self.high:
            return str(self.low)
        if (self.low, self.high) == (0, MAX_UINT):
            return "uint53"
        return f"{self.low}..{self.high}"


@dataclass(frozen=True, slots=True)
class Bool(Spec):
    def load(self, value: object, path: str) -> bool:
        if not isinstance(value, bool):
            raise _fail("wrong-type", path, "expected a boolean")
        return value

    def cddl(self) -> str:
        return "bool"


@dataclass(frozen=True, slots=True)
class Bytes(Spec):
    """A byte string of exactly ``size`` bytes, or of ``low..high`` bytes."""

    size: int | None = None
    low: int = 0
    high: int = 1 << 20

    def load(self, value: object, path: str) -> bytes:
        if not isinstance(value, bytes):
            raise _fail("wrong-type", path, "expected a byte string")
        if self.size is not None:
            if len(value) != self.size:
                raise _fail("bad-length", path, f"expected {self.size} bytes")
        elif not self.low <= len(value) <= self.high:
            raise _fail("bad-length", path, f"length not in [{self.low}, {self.high}]")
        return value

    def cddl(self) -> str:
        if self.size is not None:
            return f"bstr .size {self.size}"
        return f"bstr .size ({self.low}..{self.high})"


@dataclass(frozen=True, slots=True)
class Text(Spec):
    """A UTF-8 text string whose *encoded* length is in ``low..high`` bytes. ``shared``:
    for short names repeated in every message of a kind (an event kind, a content type):
    equal values decode to one object (``sys.intern``; freed with its last user)."""

    low: int = 0
    high: int = 1024
    shared: bool = False

    def load(self, value: object, path: str) -> str:
        if not isinstance(value, str):
            raise _fail("wrong-type", path, "expected a text string")
        if not self.low <= len(value.encode()) <= self.high:
            raise _fail("bad-length", path, f"UTF-8 length not in [{self.low}, {self.high}]")
        return sys.intern(value) if self.shared else value

    def cddl(self) -> str:
        return f"tstr .size ({self.low}..{self.high})"


@dataclass(frozen=True, slots=True)
class Choice(Spec):
    """One of a closed set of text values (an enumeration)."""

    values: tuple[str, ...]

    def load(self, value: object, path: str) -> str:
        if not isinstance(value, str):
            raise _fail("wrong-type", path, "expected a text string")
        if value not in self.values:
            raise _fail("bad-value", path, "not one of the allowed values")
        return value

    def cddl(self) -> str:
        return " / ".join(f'"{v}"' for v in self.values)


@dataclass(frozen=True, slots=True)
class ListOf(Spec):
    """An array of ``low..high`` items of one type, returned as a tuple."""

    item: Spec
    low: int = 0
    high: int = 256

    def load(self, value: object, path: str) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise _fail("wrong-type", path, "expected an array")
        if not self.low <= len(value) <= self.high:
            raise _fail("bad-length", path, f"item count not in [{self.low}, {self.high}]")
        return tuple(self.item.load(v, f"{path}[{i}]") for i, v in enumerate(value))

    def dump(self, value: Any) -> cbor.Value:
        return [self.item.dump(v) for v in value]

    def cddl(self) -> str:
        inner = self.item.cddl()
        if " " in inner:
            inner = f"({inner})"
        return f"[{self.low}*{self.high} {inner}]"

    def children(self) -> Iterator[type[Struct]]:
        return self.item.children()


@dataclass(frozen=True, slots=True)
class Nested(Spec):
    """A map described by another :class:`Struct`."""

    struct: type[Struct]

    def load(self, value: object, path: str) -> Struct:
        return self.struct.from_value(value, path=path)

    def dump(self, value: Any) -> cbor.Value:
        assert isinstance(value, self.struct)
        return value.to_value()

    def cddl(self) -> str:
        return self.struct.cddl_name()

    def children(self) -> Iterator[type[Struct]]:
        yield self.struct


_EMPTY_MAP: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class AnyMap(Spec):
    """An open map with text keys (an application-defined body), at most ``high`` entries.

    Values may be anything in the CBOR profile; the profile's depth and size caps bound it.
    """

    high: int = 64

    def load(self, value: object, path: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise _fail("wrong-type", path, "expected a map")
        if len(value) > self.high:
            raise _fail("bad-length", path, f"more than {self.high} entries")
        if not all(isinstance(k, str) for k in value):
            raise _fail("key-type", path, "map keys must be text strings")
        # The common empty body is one shared, read-only map, not one per message.
        return dict(value) if value else _EMPTY_MAP

    def dump(self, value: Any) -> cbor.Value:
        return dict(value)

    def cddl(self) -> str:
        return f"{{ 0*{self.high} tstr => any }}"


@dataclass(frozen=True, slots=True)
class WireField:
    """One declared field: attribute name, CBOR map key, type, optionality and doc."""

    name: str
    key: str
    spec: Spec
    optional: bool
    doc: str


def wire(key: str, spec: Spec, doc: str, *, optional: bool = False) -> Any:
    """Declare a dataclass field carried on the wire under map key ``key``.

    Optional fields default to ``None`` and are omitted from the encoding when ``None``
    (absent and ``null`` are not the same thing on the wire: ``null`` is refused).
    """
    metadata = {"wire": (key, spec, doc, optional)}
    if optional:
        return dataclasses.field(default=None, metadata=metadata)
    return dataclasses.field(metadata=metadata)


class Struct:
    """Base of every wire map. Subclasses are ``@dataclass(frozen=True, kw_only=True)``
    (``slots=True`` for those held by the thousand: no per-instance ``__dict__``)."""

    __slots__ = ()

    #: The CDDL rule name; defaults to the class name in kebab case.
    CDDL_NAME: ClassVar[str] = ""
    _FIELDS: ClassVar[dict[type, tuple[WireField, ...]]] = {}

    @classmethod
    def wire_fields(cls) -> tuple[WireField, ...]:
        cached = Struct._FIELDS.get(cls)
        if cached is None:
            found = []
            for f in dataclasses.fields(cls):  # type: ignore[arg-type]
                if "wire" in f.metadata:
                    key, spec, doc, optional = f.metadata["wire"]
                    found.append(WireField(f.name, key, spec, optional, doc))
            cached = Struct._FIELDS[cls] = tuple(found)
        return cached

    @classmethod
    def cddl_name(cls) -> str:
        if cls.CDDL_NAME:
            return cls.CDDL_NAME
        out = []
        for i, ch in enumerate(cls.__name__):
            if ch.isupper() and i:
                out.append("-")
            out.append(ch.lower())
        return "".join(out)

    @classmethod
    def from_value(cls: type[S], value: object, *, path: str = "") -> S:
        """Build an instance from a decoded CBOR value, checking every field."""
        if not isinstance(value, dict):
            raise _fail("wrong-type", path, f"expected a map for {cls.cddl_name()}")
        if not all(isinstance(k, str) for k in value):
            raise _fail("key-type", path, "map keys must be text strings")
        kwargs: dict[str, Any] = {}
        for f in cls.wire_fields():
            sub = f"{path}.{f.key}" if path else f.key
            if f.key not in value:
                if not f.optional:
                    raise _fail("missing-field", sub, "required field is absent")
                continue
            kwargs[f.name] = f.spec.load(value[f.key], sub)
        try:
            return cls(**kwargs)
        except ValueError as exc:  # a cross-field rule in __post_init__
            raise _fail("invalid", path, str(exc)) from None

    def to_value(self) -> dict[str, cbor.Value]:
        """The CBOR map of this message (``None`` optionals are omitted)."""
        out: dict[str, cbor.Value] = {}
        for f in self.wire_fields():
            attr = getattr(self, f.name)
            if attr is None:
                if not f.optional:
                    raise WireError("missing-field", f"{f.key} is required")
                continue
            out[f.key] = f.spec.dump(attr)
        return out

    def to_bytes(self) -> bytes:
        return encode_value(self.to_value())

    @classmethod
    def from_bytes(cls: type[S], data: bytes, *, max_size: int) -> S:
        return cls.from_value(decode_map(data, max_size=max_size))

    def check(self) -> None:
        """Re-validate the field values of a locally built instance (before sending)."""
        type(self).from_value(self.to_value())


def decode_map(data: bytes, *, max_size: int, recheck: bool = True) -> dict[str, Any]:
    """Strict CBOR decode of a map; :class:`DecodeError` reasons become ``WireError``.
    ``recheck=False``: bytes this node accepted before (see :func:`cbor.decode`)."""
    try:
        value = cbor.decode(data, max_size=max_size, recheck=recheck)
    except DecodeError as exc:
        raise WireError(exc.reason, str(exc)) from None
    if not isinstance(value, dict):
        raise WireError("wrong-type", "top-level item must be a map")
    return value


def encode_value(value: cbor.Value) -> bytes:
    try:
        return cbor.encode(value)
    except DecodeError as exc:
        raise WireError(exc.reason, str(exc)) from None


def cddl_rule(
    cls: type[Struct],
    *,
    name: str | None = None,
    fixed: Mapping[str, str | None] | None = None,
    required: frozenset[str] = frozenset(),
) -> str:
    """The CDDL rule of ``cls``: one line per field with its doc as a comment.

    ``fixed`` replaces the type of some keys by a literal (e.g. an event kind), or drops
    the key when the value is ``None``; ``required`` makes optional keys mandatory. That is
    how a generic container is specialised per kind.
    """
    fixed = fixed or {}
    lines = [f"{name or cls.cddl_name()} = {{"]
    for f in cls.wire_fields():
        if f.key in fixed and fixed[f.key] is None:
            continue
        opt = "? " if f.optional and f.key not in required else ""
        typ = fixed.get(f.key) or f.spec.cddl()
        # The colon form implies a cut (RFC 8610 section 3.5.4): a known key with a wrong
        # type cannot fall through to the "* tstr => any" wildcard below.
        lines.append(f'  {opt}"{f.key}": {typ},  ; {f.doc}')
    lines.append("  * tstr => any,  ; unknown fields are ignored (README.md)")
    lines.append("}")
    return "\n".join(lines)


def struct_closure(roots: list[type[Struct]]) -> list[type[Struct]]:
    """Every struct reachable from ``roots`` (roots first, then dependencies, no repeats)."""
    seen: list[type[Struct]] = []
    stack = list(reversed(roots))
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.append(cls)
        children = [c for f in cls.wire_fields() for c in f.spec.children()]
        stack.extend(reversed(children))
    return seen

"""Declarative params: a frozen dataclass *is* the schema of a method's params.

The node writes::

    @dataclass(frozen=True, slots=True)
    class SendParams:
        to: Annotated[str, Bounds(max_len=128)]
        text: Annotated[str, Bounds(max_len=64_000)]
        ttl_s: Annotated[int | None, Bounds(min=1, max=86_400)] = None

and the handler receives a ``SendParams``; the server has already rejected unknown
fields, missing required ones, wrong types (``True`` is not an int here), out-of-range
numbers and over-long strings with ``InvalidParamsError``. One declaration serves
validation, typing of the handler and the ``rpc.methods`` introspection output.

Supported field types: ``str``, ``int``, ``float``, ``bool``, ``bytes``, ``list[X]``
(X one of those or ``Any``), ``dict[str, Any]``, ``Any``, and ``X | None`` (``None``
accepted), each optionally wrapped in ``Annotated[..., Bounds(...)]``. A field without
a default is required.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from p2pchat.rpc.errors import InvalidParamsError

__all__ = ["Bounds", "FieldSpec", "ParamsSchema", "NoParams"]

P = TypeVar("P")

_SCALARS: Final[dict[type, str]] = {
    str: "str",
    int: "int",
    float: "float",
    bool: "bool",
    bytes: "bytes",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Bounds:
    """Bounds for one field: numeric ``min``/``max``, ``max_len`` for str/bytes/list."""

    min: int | float | None = None
    max: int | float | None = None
    max_len: int | None = None


@dataclass(frozen=True, slots=True)
class NoParams:
    """The params of a method that takes none."""


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    kind: str  # "str", "int", …, "list", "map", "any"
    item: str | None  # element kind of a list
    nullable: bool
    required: bool
    bounds: Bounds

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind, "required": self.required}
        if self.item is not None:
            out["items"] = self.item
        if self.nullable:
            out["nullable"] = True
        for key in ("min", "max", "max_len"):
            value = getattr(self.bounds, key)
            if value is not None:
                out[key] = value
        return out


def _kind_of(tp: Any, where: str) -> tuple[str, str | None]:
    if tp is Any:
        return "any", None
    if tp in _SCALARS:
        return _SCALARS[tp], None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list and len(args) == 1:
        item = args[0]
        if item is Any:
            return "list", "any"
        if item in _SCALARS:
            return "list", _SCALARS[item]
    if origin is dict and args and args[0] is str:
        return "map", None
    raise TypeError(f"{where}: unsupported params field type {tp!r}")


def _matches(kind: str, value: Any) -> bool:
    if kind == "any":
        return True
    if isinstance(value, bool):
        return kind == "bool"
    match kind:
        case "int":
            return isinstance(value, int)
        case "float":
            return isinstance(value, int | float)
        case "str":
            return isinstance(value, str)
        case "bytes":
            return isinstance(value, bytes)
        case "list":
            return isinstance(value, list)
        case "map":
            return isinstance(value, dict)
    return False  # pragma: no cover - kinds are fixed at registration


class ParamsSchema(Generic[P]):
    """Validates a params map and builds the dataclass instance a handler receives."""

    def __init__(self, cls: type[P]) -> None:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls!r} is not a dataclass")
        hints = typing.get_type_hints(cls, include_extras=True)
        specs = []
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            bounds = Bounds()
            if typing.get_origin(tp) is typing.Annotated:
                tp, *extras = typing.get_args(tp)
                bounds = next((x for x in extras if isinstance(x, Bounds)), bounds)
            nullable = False
            if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
                args = [a for a in typing.get_args(tp) if a is not type(None)]
                if len(args) != 1 or len(typing.get_args(tp)) != 2:
                    raise TypeError(f"{cls.__name__}.{f.name}: only `X | None` unions")
                tp, nullable = args[0], True
            kind, item = _kind_of(tp, f"{cls.__name__}.{f.name}")
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            specs.append(FieldSpec(f.name, kind, item, nullable, required, bounds))
        self.cls = cls
        self.fields: tuple[FieldSpec, ...] = tuple(specs)
        self._names = frozenset(s.name for s in specs)

    def describe(self) -> dict[str, Any]:
        return {s.name: s.describe() for s in self.fields}

    def validate(self, params: Mapping[str, Any]) -> P:
        """The typed params, or :class:`InvalidParamsError` naming the first bad field."""
        unknown = params.keys() - self._names
        if unknown:
            raise InvalidParamsError(f"unknown params: {', '.join(sorted(unknown)[:8])}")
        values: dict[str, Any] = {}
        for spec in self.fields:
            if spec.name not in params:
                if spec.required:
                    raise InvalidParamsError(f"missing param: {spec.name}")
                continue
            values[spec.name] = _check(spec, params[spec.name])
        return self.cls(**values)


def _check(spec: FieldSpec, value: Any) -> Any:
    if value is None and spec.nullable:
        return None
    if not _matches(spec.kind, value):
        raise InvalidParamsError(f"param {spec.name} must be {spec.kind}")
    if spec.item is not None and not all(_matches(spec.item, v) for v in value):
        raise InvalidParamsError(f"param {spec.name} must be a list of {spec.item}")
    c = spec.bounds
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if is_number and (
        (c.min is not None and value < c.min) or (c.max is not None and value > c.max)
    ):
        raise InvalidParamsError(f"param {spec.name} out of range [{c.min}, {c.max}]")
    if c.max_len is not None and isinstance(value, str | bytes | list) and len(value) > c.max_len:
        raise InvalidParamsError(f"param {spec.name} longer than {c.max_len}")
    return value

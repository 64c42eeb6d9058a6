"""The method registry: what the node exposes over RPC, each method with a scope and schema.

The node (and only the node) fills it at startup::

    registry = Registry()

    @registry.method("dm.send", scope="send", params=SendParams)
    async def dm_send(p: SendParams) -> dict[str, Any]: ...

The CLI gets no other way in: every command is a call of a registered method, with the
same scopes and validation as any third-party app.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar, get_args

from p2pchat.rpc.schema import NoParams, ParamsSchema

__all__ = ["Scope", "SCOPES", "Method", "Pager", "Registry", "RESERVED_PREFIXES"]

Scope = Literal["read", "send", "admin"]
SCOPES: Final[frozenset[str]] = frozenset(get_args(Scope))
#: Namespaces of the built-in methods the server itself implements.
RESERVED_PREFIXES: Final = ("rpc.", "events.")
_NAME: Final = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")

P = TypeVar("P")
Handler = Callable[[P], Awaitable[Any]]
#: How a method's list result is cut when it does not fit in one frame: given the call's
#: params, which end to keep (``"first"`` or ``"last"`` items) and, from the kept item at
#: the cut and how many were kept, the params of the call that returns exactly the rest
#: (the response's ``next``, merged into the original params by the client).
Pager = Callable[[Any], tuple[Literal["first", "last"], Callable[[Any, int], dict[str, Any]]]]


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    scope: Scope
    schema: ParamsSchema[Any]
    handler: Handler[Any]
    doc: str
    pager: Pager | None = None

    def describe(self) -> dict[str, Any]:
        return {"scope": self.scope, "params": self.schema.describe(), "doc": self.doc}


class Registry:
    """Name -> :class:`Method`. Registration errors are programming errors (``ValueError``)."""

    def __init__(self) -> None:
        self._methods: dict[str, Method] = {}

    def add(
        self,
        name: str,
        handler: Handler[P],
        *,
        scope: Scope,
        params: type[P],
        doc: str | None = None,
        pager: Pager | None = None,
    ) -> Method:
        if not _NAME.fullmatch(name):
            raise ValueError(f"method name {name!r} is not dotted lower-case")
        if name.startswith(RESERVED_PREFIXES):
            raise ValueError(f"{name!r} is in a reserved namespace")
        if name in self._methods:
            raise ValueError(f"method {name!r} is already registered")
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}")
        text = doc if doc is not None else (handler.__doc__ or "").strip().split("\n")[0]
        method = Method(name, scope, ParamsSchema(params), handler, text, pager)
        self._methods[name] = method
        return method

    def method(
        self, name: str, *, scope: Scope, params: type[Any] = NoParams, doc: str | None = None
    ) -> Callable[[Handler[Any]], Handler[Any]]:
        """Decorator form of :meth:`add`; returns the handler unchanged."""

        def register(handler: Handler[Any]) -> Handler[Any]:
            self.add(name, handler, scope=scope, params=params, doc=doc)
            return handler

        return register

    def get(self, name: str) -> Method | None:
        return self._methods.get(name)

    def __iter__(self) -> Iterator[Method]:
        return iter(sorted(self._methods.values(), key=lambda m: m.name))

    def __len__(self) -> int:
        return len(self._methods)

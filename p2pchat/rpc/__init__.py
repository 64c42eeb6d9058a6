"""The node's local RPC server (control socket): see ``protocol-spec/rpc.md``.

Modules: :mod:`.protocol` (sans-IO frames and messages), :mod:`.errors` (the one code
table), :mod:`.schema` and :mod:`.registry` (methods and their params), :mod:`.auth`
(tokens and scopes), :mod:`.events` (cursor log), :mod:`.transport` (listeners),
:mod:`.session` (one connection) and :mod:`.server`.

The names below are loaded on first use (PEP 562), so that a client importing only the
sans-IO codec (``p2pchat.rpc.protocol``, e.g. the asyncio client) does not load trio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from p2pchat.rpc.auth import (
        TokenInfo,
        TokenStore,
        ensure_admin_token,
        list_tokens,
        mint_token,
        read_admin_token,
        revoke_token,
    )
    from p2pchat.rpc.registry import Method, Registry, Scope
    from p2pchat.rpc.schema import Bounds, NoParams
    from p2pchat.rpc.server import RpcServer, ServerConfig, ServerStatistics, open_rpc_server

_HOMES = {
    "open_rpc_server": "server",
    "RpcServer": "server",
    "ServerConfig": "server",
    "ServerStatistics": "server",
    "Registry": "registry",
    "Method": "registry",
    "Scope": "registry",
    "Bounds": "schema",
    "NoParams": "schema",
    "TokenStore": "auth",
    "TokenInfo": "auth",
    "ensure_admin_token": "auth",
    "read_admin_token": "auth",
    "mint_token": "auth",
    "revoke_token": "auth",
    "list_tokens": "auth",
}

__all__ = list(_HOMES)


def __getattr__(name: str) -> Any:
    module = _HOMES.get(name)
    if module is None:
        raise AttributeError(f"module 'p2pchat.rpc' has no attribute {name!r}")
    return getattr(importlib.import_module(f"p2pchat.rpc.{module}"), name)

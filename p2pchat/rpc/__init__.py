"""The node's local RPC server (control socket): see ``protocol-spec/rpc.md``.

Modules: :mod:`.protocol` (sans-IO frames and messages), :mod:`.errors` (the one code
table), :mod:`.schema` and :mod:`.registry` (methods and their params), :mod:`.auth`
(tokens and scopes), :mod:`.events` (cursor log), :mod:`.config` (limits),
:mod:`.transport` (listeners), :mod:`.session` (one connection) and :mod:`.server`.

The names below are loaded on first use (PEP 562), so that a client importing only the
sans-IO codec (``p2pchat.rpc.protocol``, e.g. the asyncio client) does not load trio.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:  # the explicit "as" re-exports them for type checkers
    from p2pchat.rpc.auth import TokenInfo as TokenInfo
    from p2pchat.rpc.auth import TokenStore as TokenStore
    from p2pchat.rpc.auth import ensure_admin_token as ensure_admin_token
    from p2pchat.rpc.auth import list_tokens as list_tokens
    from p2pchat.rpc.auth import mint_token as mint_token
    from p2pchat.rpc.auth import read_admin_token as read_admin_token
    from p2pchat.rpc.auth import revoke_token as revoke_token
    from p2pchat.rpc.config import ServerConfig as ServerConfig
    from p2pchat.rpc.config import ServerStatistics as ServerStatistics
    from p2pchat.rpc.registry import Method as Method
    from p2pchat.rpc.registry import Registry as Registry
    from p2pchat.rpc.registry import Scope as Scope
    from p2pchat.rpc.schema import Bounds as Bounds
    from p2pchat.rpc.schema import NoParams as NoParams
    from p2pchat.rpc.server import RpcServer as RpcServer
    from p2pchat.rpc.server import open_rpc_server as open_rpc_server

_HOMES = {
    "open_rpc_server": "server",
    "RpcServer": "server",
    "ServerConfig": "config",
    "ServerStatistics": "config",
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


def __getattr__(name: str) -> object:
    module = _HOMES.get(name)
    if module is None:
        raise AttributeError(f"module 'p2pchat.rpc' has no attribute {name!r}")
    return getattr(_importlib.import_module(f"p2pchat.rpc.{module}"), name)

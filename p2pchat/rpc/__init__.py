"""The node's local RPC server (control socket): see ``protocol-spec/rpc.md``.

Modules: :mod:`.protocol` (sans-IO frames and messages), :mod:`.errors` (the one code
table), :mod:`.schema` and :mod:`.registry` (methods and their params), :mod:`.auth`
(tokens and scopes), :mod:`.events` (cursor log), :mod:`.transport` (listeners),
:mod:`.session` (one connection) and :mod:`.server`.
"""

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

__all__ = [
    "open_rpc_server",
    "RpcServer",
    "ServerConfig",
    "ServerStatistics",
    "Registry",
    "Method",
    "Scope",
    "Bounds",
    "NoParams",
    "TokenStore",
    "TokenInfo",
    "ensure_admin_token",
    "read_admin_token",
    "mint_token",
    "revoke_token",
    "list_tokens",
]

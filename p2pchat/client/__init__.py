"""Clients of a node's local RPC API (the CLI uses exactly these; see ``protocol-spec/rpc.md``).

* :class:`Client` — trio: ``async with await Client.connect(home=...) as client``.
* :class:`SyncClient` — blocking facade for scripts and the CLI (runs trio in a thread).
* :class:`Event`, :class:`Gap`, :class:`ServerInfo` — the values they hand out (shared
  with the asyncio client, :mod:`p2pchat.aio`).

Errors are the ``p2pchat.errors`` classes, mapped back from the server's error codes,
plus the RPC-specific subclasses in :mod:`p2pchat.rpc.errors`. Names load on first use
(PEP 562), so that importing the trio-free parts does not load trio.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:  # the explicit "as" re-exports them for type checkers
    from p2pchat.client._sync import SyncClient as SyncClient
    from p2pchat.client._sync import SyncSubscription as SyncSubscription
    from p2pchat.client._trio import Client as Client
    from p2pchat.client._trio import Subscription as Subscription
    from p2pchat.client._types import Event as Event
    from p2pchat.client._types import Gap as Gap
    from p2pchat.client._types import Page as Page
    from p2pchat.client._types import ServerInfo as ServerInfo

_HOMES = {
    "Client": "_trio",
    "Subscription": "_trio",
    "SyncClient": "_sync",
    "SyncSubscription": "_sync",
    "Event": "_types",
    "Gap": "_types",
    "Page": "_types",
    "ServerInfo": "_types",
}

__all__ = list(_HOMES)


def __getattr__(name: str) -> object:
    module = _HOMES.get(name)
    if module is None:
        raise AttributeError(f"module 'p2pchat.client' has no attribute {name!r}")
    return getattr(_importlib.import_module(f"p2pchat.client.{module}"), name)

"""Clients of a node's local RPC API (the CLI uses exactly these; see ``protocol-spec/rpc.md``).

* :class:`Client` — trio: ``async with await Client.connect(home=...) as client``.
* :class:`SyncClient` — blocking facade for scripts and the CLI (runs trio in a thread).

Errors are the ``p2pchat.errors`` classes, mapped back from the server's error codes,
plus the RPC-specific subclasses in :mod:`p2pchat.rpc.errors`.
"""

from p2pchat.client._connection import ServerInfo
from p2pchat.client._sync import SyncClient, SyncSubscription
from p2pchat.client._trio import Client, Event, Gap, Subscription

__all__ = ["Client", "SyncClient", "Subscription", "SyncSubscription", "Event", "Gap", "ServerInfo"]

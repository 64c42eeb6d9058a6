"""p2pchat from asyncio programs: an asyncio RPC client, and a node in its own trio thread.

The node is written for trio. An asyncio application (aiohttp, FastAPI, discord.py…)
has two ways to embed it without mixing event loops in one thread:

1. **Node in a thread** — :func:`run_node_in_thread` runs ``trio.run`` in a
   ``threading.Thread``; the thread serves the node's RPC socket in its home, and the asyncio side
   talks to it with :class:`AsyncioClient`, exactly like any other local app::

       handle = run_node_in_thread(config, identity)     # returns once the node listens
       try:
           async with await AsyncioClient.connect(home=handle.home) as client:
               await client.call("dm.send", {"to": account_hex, "text": "hi"})
       finally:
           handle.stop()

2. **Node as a process** — start ``p2pchat node run`` with
   ``asyncio.create_subprocess_exec`` and connect the same client to its home once the
   socket answers (``docs/embedding.md`` has the code).

:class:`AsyncioClient` is native asyncio (``asyncio.open_unix_connection``) around the
same sans-IO codec as the trio client (:mod:`p2pchat.rpc.protocol`,
:mod:`p2pchat.protocol.framing`), so errors are the same ``p2pchat.errors`` classes.
Unlike the trio :class:`p2pchat.client.Client` it does not reconnect: when the node
goes away, calls raise :class:`~p2pchat.errors.NetworkError` and subscriptions end with
it. A subscription exposes ``epoch`` and ``last_cursor`` so the app can resume without
loss on a new connection (``subscribe(after_cursor=..., epoch=...)``, rpc.md §7).
"""

from p2pchat.aio._client import AsyncioClient, AsyncioSubscription, Event, Gap, ServerInfo
from p2pchat.aio._thread import NodeThread, TrioThread, run_node_in_thread, start_trio_thread

__all__ = [
    "AsyncioClient",
    "AsyncioSubscription",
    "Event",
    "Gap",
    "ServerInfo",
    "TrioThread",
    "NodeThread",
    "start_trio_thread",
    "run_node_in_thread",
]

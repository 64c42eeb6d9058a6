"""Trimming above the high watermark, in place of py-libp2p 0.8.1's pruning pass.

py-libp2p's ``ConnectionPruner`` (run, debounced, whenever a connection is added) closes
connections down towards ``low_watermark`` once there are more than ``high_watermark``,
but it never closes a connection with an open stream. Between two nodes running
gossipsub there always is one: each side keeps a long-lived ``/meshsub/1.x`` stream to
every peer it knows, for as long as the connection lives. So upstream's pass closed
nothing between p2pchat nodes, and the watermarks were only numbers (measured: four
idle peers over a high watermark of three were all kept).

:class:`Trimmer` is installed on the pruner instance (as :class:`~._inbound.InboundGate`
is on the swarm) and applies the same policy, with *idle* meaning "no stream but the
long-lived gossip ones": connections past their grace period (``trim_grace_period``),
to peers nobody protected (``Network.protect``: contacts, group members, relays), with
no other stream open, are closed, oldest first, down to ``low_watermark``.

Upstream description: "ConnectionPruner never prunes a connection with an open stream,
and pubsub keeps one open to every peer for the connection's life, so hosts running
gossipsub are never trimmed; long-lived protocol streams should not count as activity."
"""

from __future__ import annotations

import logging
import time
from typing import Any

__all__ = ["Trimmer"]

logger = logging.getLogger("p2pchat.net.trim")

#: Streams that live as long as their connection: they do not make it busy.
_BACKGROUND = ("/meshsub/", "/floodsub/")


def _busy(connection: Any) -> bool:
    for stream in connection.get_streams():
        protocol = str(stream.get_protocol() or "")
        if not protocol.startswith(_BACKGROUND):
            return True
    return False


class Trimmer:
    """The pruning pass of one swarm (see the module docstring)."""

    def __init__(self, swarm: Any, *, low: int, high: int, grace_period: float) -> None:
        self._swarm = swarm
        self._low = low
        self._high = high
        self._grace = grace_period
        self.trimmed = 0

    def install(self) -> None:
        self._swarm.connection_pruner.maybe_prune_connections = self.trim

    async def trim(self) -> None:
        connections = list(self._swarm.get_connections())
        if len(connections) <= self._high:
            return
        now = time.time()  # py-libp2p stamps connections (``_created_at``) with it
        candidates = []
        for connection in connections:
            created = getattr(connection, "_created_at", None)
            if not isinstance(created, int | float) or now - created < self._grace:
                continue
            peer = connection.muxed_conn.peer_id
            if self._swarm.is_protected(peer) or _busy(connection):
                continue
            candidates.append((created, connection))
        candidates.sort(key=lambda item: item[0])
        for _, connection in candidates[: len(connections) - self._low]:
            logger.debug("trimming idle connection to %s", connection.muxed_conn.peer_id)
            self.trimmed += 1
            try:
                await connection.close()
            except Exception as exc:  # noqa: BLE001 - a closing connection may fail any way
                logger.debug("closing a trimmed connection failed: %s", exc)

"""Liveness of relayed connections (and of our relays): ping with a deadline, close the dead.

A relayed connection is a libp2p connection tunnelled through one stream to the relay on
each side; the relay copies bytes between the two streams, one task per direction
(py-libp2p 0.8.1, ``CircuitV2Protocol._relay_data``). When one of those tasks ends and the
other does not, the circuit is *half dead*: one direction still flows, the other goes
nowhere, and neither endpoint notices (both TCP connections to the relay are healthy;
py-libp2p's Yamux measures ping RTT but never acts on a missing pong). The testnet showed
it: DMs one way stalled for 17 minutes on a connection both ends called connected.

So, every ``NetConfig.relay_ping_interval`` seconds, each relayed connection and each
direct connection to a relay we hold a reservation on gets a ``/ipfs/ping/1.0.0`` on *that*
connection (py-libp2p's ``ping_connection``), answered within
``relay_ping_timeout``; after ``relay_ping_failures`` failures in a row (re-probed at once)
the connection is closed. A dead relayed connection to a peer we care about (protected:
contact, group member, mailbox) is redialled at once (our dialer: a new circuit, through
the same or another relay); the new connection's ``PeerConnected`` makes the DM outbox
retry and the groups sync. A dead connection to a relay makes :class:`AutoRelay` drop it
and reserve again (with it, or with another relay). See docs/networking.md, "Behind NAT".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio
from libp2p.abc import IHost, INetConn
from libp2p.network.health.ping_probe import ping_connection
from libp2p.peer.id import ID

from .reachability import is_relayed

__all__ = ["Liveness"]

logger = logging.getLogger(__name__)

#: At most this many connections are probed at once.
_MAX_PROBES = 16


class Liveness:
    """Pings relayed connections and relay connections; closes (and redials) the dead."""

    def __init__(
        self,
        host: IHost,
        *,
        interval: float,
        timeout: float,
        failures: int,
        relays: Callable[[], list[str]],
        redial_timeout: float,
    ) -> None:
        self._host = host
        self._interval = interval
        self._timeout = timeout
        self._failures = failures
        self._relays = relays
        self._redial_timeout = redial_timeout
        self.stats = {
            "liveness_pings": 0,
            "liveness_ping_failures": 0,
            "relayed_closed_dead": 0,
            "relay_conns_closed_dead": 0,
            "relayed_redials": 0,
            "relayed_redial_failures": 0,
        }

    def targets(self) -> list[tuple[ID, INetConn, bool]]:
        """(peer, connection, relayed?) for every connection to check now."""
        network: Any = self._host.get_network()
        relays = set(self._relays())
        out = []
        for peer in self._host.get_connected_peers():
            for conn in network.get_connections(peer):
                if conn.is_closed:
                    continue
                relayed = is_relayed(conn)
                if relayed or peer.to_base58() in relays:
                    out.append((peer, conn, relayed))
        return out

    async def run(self) -> None:
        limiter = trio.CapacityLimiter(_MAX_PROBES)
        while True:
            await trio.sleep(self._interval)
            async with trio.open_nursery() as nursery:
                for peer, conn, relayed in self.targets():
                    nursery.start_soon(self._check, limiter, peer, conn, relayed)

    async def alive(self, conn: INetConn) -> bool:
        """One ping on ``conn`` within the deadline."""
        self.stats["liveness_pings"] += 1
        ok = False
        # ping_connection bounds itself; the outer scope also bounds closing its stream.
        with trio.move_on_after(self._timeout + 5.0):
            ok = (await ping_connection(conn, ping_timeout=self._timeout)).success
        if not ok:
            self.stats["liveness_ping_failures"] += 1
        return ok

    async def _check(
        self, limiter: trio.CapacityLimiter, peer: ID, conn: INetConn, relayed: bool
    ) -> None:
        async with limiter:
            for _ in range(self._failures):
                if conn.is_closed or await self.alive(conn):
                    return
            if conn.is_closed:
                return
            what = "relayed connection" if relayed else "connection to our relay"
            logger.warning(
                "%s to %s (%s) answered no ping within %.0f s, %d times: closing it",
                what,
                peer.to_base58(),
                _describe(conn),
                self._timeout,
                self._failures,
            )
            self.stats["relayed_closed_dead" if relayed else "relay_conns_closed_dead"] += 1
            # Asked first: py-libp2p forgets a peer's protection with its last connection.
            wanted = relayed and self._host.get_network().is_protected(peer, "")
            try:
                with trio.move_on_after(5.0):
                    await conn.close()
            except Exception as exc:  # noqa: BLE001 - a probe must never take the node down
                logger.info("closing a dead connection to %s failed: %r", peer.to_base58(), exc)
            if wanted:
                await self._redial(peer)
            elif relayed:
                logger.info("not redialling %s: nobody asked to keep it", peer.to_base58())

    async def _redial(self, peer: ID) -> None:
        """A new connection (our dialer: a fresh circuit, or direct) to a peer we care about."""
        self.stats["relayed_redials"] += 1
        try:
            with trio.fail_after(self._redial_timeout):
                conns = await self._host.get_network().dial_peer(peer)
            logger.info("redialled %s: %s", peer.to_base58(), "; ".join(map(_describe, conns)))
        except Exception as exc:  # noqa: BLE001 - any dial failure; the outbox retries later
            self.stats["relayed_redial_failures"] += 1
            logger.info("redialling %s after a dead relayed connection failed: %r", peer, exc)


def _describe(conn: INetConn) -> str:
    """A connection's addresses, for the log."""
    try:
        return ", ".join(str(a) for a in conn.get_transport_addresses())
    except Exception:  # noqa: BLE001 - only for a log line
        return "?"

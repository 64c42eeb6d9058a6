"""Automatic relay reservations for a node that is not publicly reachable.

While :class:`~p2pchat.net.reachability.ReachabilityTracker` says ``private``, :class:`AutoRelay`
keeps reservations with up to ``NetConfig.auto_relays`` relays: connected peers (over a
direct connection) that announced the circuit relay v2 *hop* protocol in identify. It
refreshes each reservation before it expires (at 3/4 of its lifetime), drops a relay that
disconnected or refused, and reserves with another one. The relayed addresses
(``<relay addr>/p2p/<relay>/p2p-circuit``) are added to what the host advertises
(identify, and so the DHT's peer routing), and pushed to connected peers with
identify/push whenever the set changes. Connections to held relays are protected from
the connection manager's trimming (``swarm.protect``).

py-libp2p 0.8.1's own ``RelayDiscovery``/refresh worker is not used: it reserves with
any peer that answers, never replaces a relay, and does not feed the host's addresses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStoreError
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL_ID

from ._addrs import AddrClass, classify
from .reachability import Reachability, is_relayed

__all__ = ["AutoRelay", "HeldReservation"]

logger = logging.getLogger(__name__)

#: How long a relay that refused (or failed) is not asked again.
_RETRY_REFUSED = 120.0
#: How often the relay set is looked at (and on every wake-up).
_TICK = 2.0
#: The connection manager's protection tag for our relays.
_PROTECT_TAG = "relay"  # the tag Network.protect documents


@dataclass(frozen=True, slots=True)
class HeldReservation:
    relay: str
    granted_at: float  # Unix seconds (the relay's expiry is in Unix seconds)
    expires: float
    addrs: tuple[str, ...]  # our relayed addresses through it
    reserved_at: float  # trio clock


class AutoRelay:
    """Holds reservations on a few relays while we are private (see the module doc)."""

    def __init__(
        self,
        host: IHost,
        reserve: Callable[[str], Awaitable[float]],
        *,
        want: int,
        status: Callable[[], Reachability],
        on_change: Callable[[list[str]], None],
    ) -> None:
        self._host = host
        self._reserve = reserve
        self._want = want
        self._status = status
        self._on_change = on_change
        self._held: dict[str, HeldReservation] = {}
        self._refused: dict[str, float] = {}
        self.first_reserved_at: float | None = None
        self.stats = {"reservations": 0, "reservation_failures": 0, "relays_replaced": 0}
        self.wake = trio.Event()

    @property
    def relayed_addrs(self) -> list[str]:
        return [a for held in self._held.values() for a in held.addrs]

    def held(self) -> list[HeldReservation]:
        return list(self._held.values())

    def statistics(self) -> dict[str, Any]:
        return {
            **self.stats,
            "relays": sorted(self._held),
            "relayed_addrs": self.relayed_addrs,
        }

    def _connected_directly(self, peer: ID) -> bool:
        network: Any = self._host.get_network()
        conns = [c for c in network.get_connections(peer) if not c.is_closed]
        return bool(conns) and not all(is_relayed(c) for c in conns)

    def _candidates(self) -> list[ID]:
        store = self._host.get_peerstore()
        now = trio.current_time()
        out = []
        for peer in self._host.get_connected_peers():
            pid = peer.to_base58()
            if pid in self._held or now - self._refused.get(pid, -_RETRY_REFUSED) < _RETRY_REFUSED:
                continue
            try:
                speaks = bool(store.supports_protocols(peer, [HOP_PROTOCOL_ID]))
            except PeerStoreError:  # nothing known about the peer yet
                speaks = False
            if speaks and self._connected_directly(peer) and self._relay_addrs(peer):
                out.append(peer)
        return out

    def _relay_addrs(self, peer: ID) -> list[str]:
        """Where strangers can reach the relay: its advertised public TCP addresses."""
        try:
            known = [str(a) for a in self._host.get_peerstore().addrs(peer)]
        except PeerStoreError:  # nothing known (or expired) about the peer
            return []
        pid = peer.to_base58()
        out = []
        for addr in known:
            base = addr.split("/p2p/")[0]
            if classify(base) in (AddrClass.PUBLIC, AddrClass.PRIVATE, AddrClass.LAN):
                circuit = f"{base}/p2p/{pid}/p2p-circuit"
                if circuit not in out:
                    out.append(circuit)
        return out[:2]

    async def _try(self, peer: ID) -> bool:
        pid = peer.to_base58()
        try:
            expires = await self._reserve(pid)
        except Exception as exc:  # noqa: BLE001 - a relay refusing or going away
            logger.info("relay reservation with %s failed: %s", pid, exc)
            self.stats["reservation_failures"] += 1
            self._refused[pid] = trio.current_time()
            self._drop(pid)
            return False
        now = time.time()
        self._protect(peer, True)
        self._held[pid] = HeldReservation(
            pid, now, float(expires), tuple(self._relay_addrs(peer)), trio.current_time()
        )
        self.stats["reservations"] += 1
        if self.first_reserved_at is None:
            self.first_reserved_at = trio.current_time()
        return True

    async def tick(self) -> None:
        """Drop lost relays, refresh expiring reservations, add relays up to ``want``."""
        before = self.relayed_addrs
        if self._status() is not Reachability.PRIVATE:
            for pid in list(self._held):
                self._drop(pid)
        else:
            for pid in list(self._held):
                if not self._connected_directly(ID.from_base58(pid)):
                    logger.info("relay %s went away; looking for another", pid)
                    self._drop(pid)
                    self.stats["relays_replaced"] += 1
            now = time.time()
            for pid, held in list(self._held.items()):
                lifetime = held.expires - held.granted_at
                if now >= held.expires - max(lifetime / 4, 10.0):
                    await self._try(ID.from_base58(pid))
            for peer in self._candidates():
                if len(self._held) >= self._want:
                    break
                await self._try(peer)
        if self.relayed_addrs != before:
            self._on_change(self.relayed_addrs)

    def _drop(self, pid: str) -> None:
        if self._held.pop(pid, None) is not None:
            self._protect(ID.from_base58(pid), False)

    def _protect(self, peer: ID, on: bool) -> None:
        """Keep the connection manager from trimming a relay we hold a reservation on."""
        network: Any = self._host.get_network()
        method = getattr(network, "protect" if on else "unprotect", None)
        if method is not None:
            method(peer, _PROTECT_TAG)

    async def run(self) -> None:
        while True:
            with trio.move_on_after(_TICK):
                await self.wake.wait()
            self.wake = trio.Event()
            await self.tick()

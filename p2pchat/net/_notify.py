"""py-libp2p swarm notifications as our network events (PeerConnected / PeerDisconnected on a
peer's first / last connection); every connection also tells the dialer the peer is reachable."""

from __future__ import annotations

from libp2p.abc import INetConn, INetStream, INetwork, INotifee
from multiaddr import Multiaddr

from ._dialer import Dialer, remote_ip
from ._events import EventBus
from .base import PeerConnected, PeerDisconnected

__all__ = ["ConnectionEvents"]


class ConnectionEvents(INotifee):
    """Turns swarm notifications into PeerConnected / PeerDisconnected (first / last)."""

    def __init__(self, network: INetwork, bus: EventBus, dialer: Dialer) -> None:
        self._network = network
        self._bus = bus
        self._dialer = dialer

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        self._dialer.connected(peer.to_base58(), remote_ip(conn))
        if len(network.get_connections(peer)) <= 1:
            self._bus.emit(PeerConnected(peer.to_base58()))

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        if not [c for c in network.get_connections(peer) if c is not conn]:
            self._bus.emit(PeerDisconnected(peer.to_base58()))

    async def listen(self, network: INetwork, multiaddr: Multiaddr) -> None:
        return None

    async def listen_close(self, network: INetwork, multiaddr: Multiaddr) -> None:
        return None

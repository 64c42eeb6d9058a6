"""The cheapest real inbound libp2p connection: TCP, Noise (a fresh key, so a new peer id
each time) and Yamux negotiated, nothing more; no host, no swarm, no services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from libp2p.abc import IMuxedConn
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.transport.tcp.tcp import TCP
from libp2p.transport.upgrader import TransportUpgrader
from multiaddr import Multiaddr


@asynccontextmanager
async def raw_connection(addr: str, peer_id: str) -> AsyncIterator[IMuxedConn]:
    """A Noise + Yamux connection to ``addr`` as a new peer; closed on exit."""
    key_pair = create_new_key_pair()
    noise = NoiseTransport(key_pair, noise_privkey=new_x25519_key_pair().private_key)
    upgrader = TransportUpgrader(
        {TProtocol(NOISE_PROTOCOL_ID): noise}, {TProtocol(YAMUX_PROTOCOL_ID): Yamux}
    )
    raw = await TCP().dial(Multiaddr(addr))
    try:
        secured = await upgrader.upgrade_security(raw, True, ID.from_base58(peer_id))
        muxed = await upgrader.upgrade_connection(secured, ID.from_base58(peer_id))
        yield muxed
    finally:
        await raw.close()

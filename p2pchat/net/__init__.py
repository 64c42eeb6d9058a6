"""Network adapters: thin, stateless movers of bytes under one interface.

Importing this package does not import py-libp2p (about a second); import
:mod:`p2pchat.net.libp2p_host` only where a real network is needed, and
:mod:`p2pchat.net.memory` for tests and the simulator.
"""

from __future__ import annotations

from .base import (
    Dht,
    FramedStream,
    NetEvent,
    Network,
    PeerConnected,
    PeerDisconnected,
    PeerDiscovered,
    PeerInfo,
    PubSub,
    RecordValidator,
    StreamHandler,
    Subscription,
    TopicValidator,
)
from .config import DEFAULT_PORT, GossipConfig, NetConfig, RetryConfig
from .identity import public_key_to_peer_id, seed_to_peer_id

__all__ = [
    "Network",
    "FramedStream",
    "StreamHandler",
    "Dht",
    "RecordValidator",
    "PubSub",
    "Subscription",
    "TopicValidator",
    "PeerInfo",
    "NetEvent",
    "PeerConnected",
    "PeerDisconnected",
    "PeerDiscovered",
    "NetConfig",
    "GossipConfig",
    "RetryConfig",
    "DEFAULT_PORT",
    "seed_to_peer_id",
    "public_key_to_peer_id",
]

"""One frozen configuration object for the network layer (no dozens of kwargs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from p2pchat.errors import ConfigError

__all__ = ["DEFAULT_PORT", "GossipConfig", "RetryConfig", "RelayLimitsConfig", "NetConfig"]

#: A fixed default port, so that a contact's address stays stable across restarts.
DEFAULT_PORT = 4242


@dataclass(frozen=True, slots=True, kw_only=True)
class GossipConfig:
    """Gossipsub parameters; py-libp2p's defaults (heartbeat 120 s, no D) are unusable.

    ``max_messages_per_topic_per_second`` is py-libp2p's spam filter: above it, messages
    from one forwarding peer on one topic are dropped silently. Subscription queues hold
    32 messages and also drop silently. The groups layer therefore batches.
    """

    heartbeat_interval: float = 1.0
    degree: int = 6
    degree_low: int = 4
    degree_high: int = 12
    max_messages_per_topic_per_second: float = 10.0

    def __post_init__(self) -> None:
        if not 0 < self.degree_low <= self.degree <= self.degree_high:
            raise ConfigError("gossip degrees must satisfy 0 < D_lo <= D <= D_hi")
        if self.heartbeat_interval <= 0:
            raise ConfigError("gossip heartbeat interval must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryConfig:
    """Timeout, attempts and jittered exponential backoff for DHT lookups.

    py-libp2p's DHT sometimes fails to open streams under load (a server resets kad
    streams beyond 12 at once), so one failed lookup is not an answer. An attempt must
    outlive py-libp2p's own per-peer query timeout (``kad_dht.common.QUERY_TIMEOUT``,
    10 s) plus the lookup around it: with 10 s, one unresponsive peer among the closest
    (a node just killed) failed every attempt of a ``get`` (the testnet's "invite joins
    failed on DHT gets"), where py-libp2p would have answered from the other peers.
    """

    attempt_timeout: float = 25.0
    attempts: int = 3
    base_delay: float = 0.2
    max_delay: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.attempt_timeout <= 0 or self.base_delay < 0:
            raise ConfigError("retry needs attempts >= 1, a positive timeout, delay >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayLimitsConfig:
    """What this node gives others as a circuit relay (``NetConfig.relay_hop``).

    Relayed chat is small and bursty; the limits keep a home node from carrying someone
    else's bulk traffic: per circuit a time and byte cap, and caps on reservations and
    circuits held at once.
    """

    reservation_ttl: int = 3600
    max_reservations: int = 16
    max_circuits: int = 16
    circuit_duration: int = 3600
    circuit_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        values = (
            self.reservation_ttl,
            self.max_reservations,
            self.max_circuits,
            self.circuit_duration,
            self.circuit_bytes,
        )
        if min(values) < 1:
            raise ConfigError("relay limits must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class NetConfig:
    """Everything the libp2p adapter needs to know besides the device key.

    ``port=0`` picks a free port (tests); ``bootstrap`` holds full multiaddrs ending in
    ``/p2p/<peer id>``. NAT traversal (docs/networking.md, "Behind NAT"): ``autonat``
    serves dial-backs to others and finds out whether we are publicly reachable;
    ``relay_hop`` makes this node a circuit-relay v2 relay for others, within
    ``relay_limits`` and only while it is not known to be private; ``relay_client`` lets it
    dial through relays and, with ``auto_relay``, reserve with up to ``auto_relays``
    relays while it is private; ``upnp`` asks a UPnP router for a port mapping.
    """

    # All interfaces by default: a chat node must be reachable from its LAN peers.
    listen_hosts: tuple[str, ...] = ("0.0.0.0",)  # noqa: S104
    port: int = DEFAULT_PORT
    bootstrap: tuple[str, ...] = ()
    dht_mode: Literal["server", "client"] = "server"
    dht_refresh_interval: float = 300.0
    gossip: GossipConfig = field(default_factory=GossipConfig)
    dht_retry: RetryConfig = field(default_factory=RetryConfig)
    mdns: bool = False
    #: Announced with mDNS so that people nearby see who is there (opt-in with ``mdns``).
    display_name: str | None = None
    # On by default, as in ``p2pchat node run`` (docs/networking.md, "Behind NAT").
    relay_hop: bool = True
    relay_client: bool = True
    relay_limits: RelayLimitsConfig = field(default_factory=RelayLimitsConfig)
    autonat: bool = True
    #: Seconds between reachability checks once the answer is known.
    autonat_interval: float = 300.0
    auto_relay: bool = True
    auto_relays: int = 2
    hole_punching: bool = True
    #: Liveness of relayed connections and of our relays' connections (``_liveness.py``):
    #: a ping every ``relay_ping_interval`` s, answered within ``relay_ping_timeout`` s;
    #: after ``relay_ping_failures`` failures in a row the connection is closed (and a
    #: relayed one to a peer we care about redialled). ``0`` interval: off.
    relay_ping_interval: float = 10.0
    relay_ping_timeout: float = 15.0
    relay_ping_failures: int = 2
    upnp: bool = False
    dial_timeout: float = 10.0
    event_buffer: int = 256
    #: py-libp2p's connection manager dials peers from its peerstore until it holds
    #: ``low_watermark`` connections (its defaults: 50/100/300, far more than a chat
    #: node needs; each connection costs sockets and gossip traffic).
    min_connections: int = 8
    low_watermark: int = 16
    high_watermark: int = 64
    max_connections: int = 128
    #: Inbound connections held at once from one IP address (many peers may share a
    #: NAT, so not 1; one host must not take every inbound slot).
    max_inbound_per_ip: int = 16
    #: Above ``high_watermark`` connections, idle (no open stream) connections to peers
    #: nobody protected (contacts, group members, mailboxes, relays: ``Network.protect``)
    #: are closed down to ``low_watermark``; never one younger than this (seconds).
    trim_grace_period: float = 20.0
    #: Every stream protocol: a frame must arrive within this once begun, and the next
    #: frame within ``stream_idle_timeout`` (see :mod:`p2pchat.net._framed`).
    stream_frame_timeout: float = 30.0
    stream_idle_timeout: float = 60.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is out of range")
        if not self.listen_hosts:
            raise ConfigError("at least one listen host is needed")
        if self.dht_mode not in ("server", "client"):
            raise ConfigError(f"unknown DHT mode {self.dht_mode!r}")
        if self.dial_timeout <= 0 or self.dht_refresh_interval <= 0:
            raise ConfigError("timeouts and intervals must be positive")
        if self.autonat_interval <= 0 or not 1 <= self.auto_relays <= 8:
            raise ConfigError("autonat_interval must be positive and auto_relays 1 to 8")
        if self.relay_ping_interval < 0 or self.relay_ping_timeout <= 0:
            raise ConfigError("relay_ping_interval must be >= 0 and relay_ping_timeout positive")
        if self.relay_ping_failures < 1:
            raise ConfigError("relay_ping_failures must be at least 1")
        if self.event_buffer < 1:
            raise ConfigError("event buffer must hold at least one event")
        if not (
            0
            <= self.min_connections
            <= self.low_watermark
            <= self.high_watermark
            <= self.max_connections
        ):
            raise ConfigError("connection limits must satisfy min <= low <= high <= max")
        if min(self.stream_frame_timeout, self.stream_idle_timeout) <= 0:
            raise ConfigError("stream timeouts must be positive")
        if self.max_inbound_per_ip < 1:
            raise ConfigError("max_inbound_per_ip must be at least 1")
        for addr in self.bootstrap:
            if not addr.startswith("/") or "/p2p/" not in addr:
                raise ConfigError("bootstrap addresses are multiaddrs ending in /p2p/<peer id>")

    @property
    def listen_addrs(self) -> list[str]:
        """The TCP multiaddrs to listen on (IPv4 hosts as ``/ip4/…``, IPv6 as ``/ip6/…``)."""
        proto = {True: "ip6", False: "ip4"}
        return [f"/{proto[':' in host]}/{host}/tcp/{self.port}" for host in self.listen_hosts]

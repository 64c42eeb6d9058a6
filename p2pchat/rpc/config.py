"""The RPC server's limits and statistics, shared by the server, its sessions and listeners.

Kept apart from :mod:`p2pchat.rpc.server` so that the modules the server is built from
(:mod:`.session`, :mod:`.transport`) need not import the server.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from p2pchat.errors import ConfigError
from p2pchat.protocol.framing import MAX_FRAME
from p2pchat.rpc.events import TokenBucket

__all__ = ["ServerConfig", "ServerStatistics", "new_bucket"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """Limits and listeners. The defaults suit a desktop node; tests shrink them."""

    max_frame: int = MAX_FRAME
    max_in_flight: int = 64
    max_subscriptions: int = 16
    max_connections: int = 64  # authenticated clients
    #: Connections that have not said ``rpc.hello`` yet; the oldest is dropped for a new one
    #: (they never count against ``max_connections``, so they cannot lock the owner out).
    max_unauthenticated: int = 8
    rate: float = 500.0  # requests per second per connection, on average
    burst: int = 1000
    event_log_capacity: int = 10_000
    event_queue: int = 1_000  # live events pending per connection before slow-consumer
    hello_timeout: float = 3.0
    close_grace: float = 5.0  # seconds a closing connection may take to flush its last frame
    tcp_host: str = "127.0.0.1"
    tcp_port: int | None = None  # None: unix socket only; 0: any free port

    def __post_init__(self) -> None:
        positive = (
            "max_frame",
            "max_in_flight",
            "max_subscriptions",
            "max_connections",
            "max_unauthenticated",
            "burst",
            "event_log_capacity",
            "event_queue",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"ServerConfig.{name} must be positive")
        if min(self.rate, self.hello_timeout, self.close_grace) <= 0:
            raise ConfigError("ServerConfig.rate, hello_timeout and close_grace must be positive")
        if self.tcp_port is not None and not 0 <= self.tcp_port <= 65535:
            raise ConfigError("ServerConfig.tcp_port must be 0..65535")


@dataclass(frozen=True, slots=True)
class ServerStatistics:
    connections: int
    events_published: int
    last_cursor: int
    slow_consumer_disconnects: int


def new_bucket(config: ServerConfig) -> TokenBucket:
    """A full request-rate bucket for one connection, per ``config.rate`` and ``burst``."""
    return TokenBucket(rate=config.rate, burst=config.burst, now=trio.current_time())

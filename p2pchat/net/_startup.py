"""Starting a libp2p network: this machine's interfaces, the port check, bootstrap and
the routing-table refresh (kept apart from :mod:`.libp2p_host`, which is the network)."""

from __future__ import annotations

import logging
import random
import socket
import sys
import time
from collections.abc import Sequence
from typing import Protocol

import trio

from p2pchat.errors import NetworkError

from ._addrs import LocalInterfaces, local_interfaces
from .config import NetConfig


class _RoutingTable(Protocol):
    async def add_peer(self, peer_id: str) -> None: ...

    async def refresh(self) -> None: ...


class _Joining(Protocol):
    """What bootstrapping needs of a :class:`~p2pchat.net.libp2p_host.Libp2pNetwork`."""

    @property
    def dht(self) -> _RoutingTable: ...

    async def connect(self, peer_id: str, addrs: Sequence[str]) -> None: ...


__all__ = ["Interfaces", "bootstrap", "check_ports_free", "refresh_forever"]

logger = logging.getLogger("p2pchat.net.libp2p_host")  # the messages it always had


class Interfaces:
    """This machine's interfaces, re-read at most every few seconds (they change: a
    laptop moves between networks; py-libp2p asks for our addresses very often)."""

    def __init__(self, ttl: float = 10.0) -> None:
        self._ttl = ttl
        self._read_at = -ttl
        self._value = LocalInterfaces()

    def get(self) -> LocalInterfaces:
        now = time.monotonic()
        if now - self._read_at >= self._ttl:
            self._value = local_interfaces()
            self._read_at = now
        return self._value


def check_ports_free(config: NetConfig) -> None:
    """Refuse a fixed port that another process already listens on.

    py-libp2p listens with ``SO_REUSEPORT``, so a second node on the same port would
    start without error while the kernel split incoming connections between the two.
    A bind without ``SO_REUSEPORT`` tells the truth. The probe does set ``SO_REUSEADDR``
    (as every listener does): without it, the ``TIME_WAIT`` connections a node leaves
    when it stops or crashes would refuse its own restart on its port for a minute.
    """
    if config.port == 0:
        return
    for host in config.listen_hosts:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            if sys.platform != "win32":  # on Windows, SO_REUSEADDR means sharing the port
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, config.port))
            except OSError as exc:
                raise NetworkError(
                    f"cannot listen on {host} port {config.port}: {exc.strerror} "
                    "(is another node running? choose another --port)"
                ) from None


async def bootstrap(network: _Joining, config: NetConfig, *, jitter: random.Random) -> None:
    """Connect to the bootstrap peers, add them to the routing table, refresh it."""
    reached = 0
    for addr in config.bootstrap:
        peer_id = addr.rsplit("/p2p/", 1)[-1]
        try:
            await network.connect(peer_id, [addr])
            await network.dht.add_peer(peer_id)
        except NetworkError as exc:
            logger.info("bootstrap peer unreachable: %s", type(exc).__name__)
            continue
        reached += 1
    if reached:
        try:
            await network.dht.refresh()
        except NetworkError as exc:
            logger.info("initial routing table refresh failed: %s", type(exc).__name__)


async def refresh_forever(dht: _RoutingTable, interval: float) -> None:
    while True:
        await trio.sleep(interval)
        try:
            await dht.refresh()
        except NetworkError as exc:
            logger.info("routing table refresh failed: %s", type(exc).__name__)

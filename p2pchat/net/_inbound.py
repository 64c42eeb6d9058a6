"""Our inbound connection handler in place of py-libp2p 0.8.1's (see docs/networking.md).

py-libp2p's ``Swarm._handle_inbound_connection`` takes a slot of ``_inbound_limiter``
(capacity ``max_connections - min_connections``) and then, after the upgrade, waits for
the *swarm* to finish (``await self.manager.wait_finished()``) before releasing it. A
slot is therefore freed only when the node stops: after that many inbound connections
in total (120 with our old :class:`~p2pchat.net.config.NetConfig`), every new inbound
connection is refused until a restart, while existing connections and outbound dials
keep working.

:class:`InboundGate` is installed on the swarm instance (the listener looks the method
up on each connection), and does what upstream means to do: the slot is held while
*that* connection lives, and released when it closes. It also limits the inbound
connections held from one IP (``NetConfig.max_inbound_per_ip``), so that one host
cannot take every slot.

Upstream description: "Swarm._handle_inbound_connection holds its _inbound_limiter slot
until the swarm stops (manager.wait_finished()), not until the connection closes, so a
host refuses every inbound connection after max_connections - min_connections inbound
connections in total. The handler should wait for the muxed connection to close."
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import trio
from libp2p.network.connection.raw_connection import RawConnection
from multiaddr import Multiaddr

__all__ = ["InboundGate"]

logger = logging.getLogger("p2pchat.net.inbound")

#: How often a connection without a close event is checked (py-libp2p muxers have one).
_POLL = 1.0


class InboundGate:
    """The swarm's inbound handler: a slot per live connection, and a per-IP limit."""

    def __init__(self, swarm: Any, *, per_ip: int, handshake_timeout: float) -> None:
        self._swarm = swarm
        self._per_ip = per_ip
        self._handshake_timeout = handshake_timeout
        self._by_ip: Counter[str] = Counter()
        self.stats = {"inbound_accepted": 0, "inbound_refused_full": 0, "inbound_refused_ip": 0}

    def install(self) -> None:
        self._swarm._handle_inbound_connection = self.handle

    @property
    def live(self) -> int:
        """Inbound connections held now (each holds one slot)."""
        return sum(self._by_ip.values())

    async def handle(self, read_write_closer: Any, maddr: Multiaddr) -> None:
        limiter: trio.CapacityLimiter = self._swarm._inbound_limiter
        ip = _remote_ip(read_write_closer)
        if self._by_ip[ip] >= self._per_ip:
            self.stats["inbound_refused_ip"] += 1
            logger.debug("refusing an inbound connection: %d already from one IP", self._per_ip)
            await _close(read_write_closer)
            return
        try:
            limiter.acquire_nowait()
        except trio.WouldBlock:
            self.stats["inbound_refused_full"] += 1
            logger.debug("refusing an inbound connection: %d slots taken", limiter.total_tokens)
            await _close(read_write_closer)
            return
        self._by_ip[ip] += 1
        try:
            await self._serve(read_write_closer, maddr)
        finally:
            limiter.release()
            self._by_ip[ip] -= 1
            if self._by_ip[ip] <= 0:
                del self._by_ip[ip]

    async def _serve(self, read_write_closer: Any, maddr: Multiaddr) -> None:
        """Upstream's standard (TCP) path, waiting for this connection, not the swarm."""
        swarm = self._swarm
        remote = swarm._build_remote_multiaddr(read_write_closer)
        if remote is not None and not await swarm.connection_gate.is_allowed(remote):
            await _close(read_write_closer)
            return
        raw_conn = RawConnection(read_write_closer, False)
        muxed = None
        try:
            # A peer that never finishes its handshake must not hold a slot forever.
            with trio.move_on_after(self._handshake_timeout):
                muxed = await swarm.upgrade_inbound_raw_conn(raw_conn, maddr)
        except Exception as exc:  # noqa: BLE001 - upstream logs and drops any upgrade failure
            logger.debug("inbound upgrade failed: %s", type(exc).__name__)
        if muxed is None:
            await _close(raw_conn)
            return
        self.stats["inbound_accepted"] += 1
        await _wait_closed(muxed)


async def _wait_closed(muxed: Any) -> None:
    """Until the muxed connection is shutting down (closed by either side)."""
    for name in ("event_shutting_down", "event_closed"):  # Yamux; Mplex has only the second
        event = getattr(muxed, name, None)
        if isinstance(event, trio.Event):
            await event.wait()
            return
    while not muxed.is_closed:  # noqa: ASYNC110 - no event to wait on here
        await trio.sleep(_POLL)


def _remote_ip(read_write_closer: Any) -> str:
    get = getattr(read_write_closer, "get_remote_address", None)
    try:
        remote = get() if get is not None else None
    except OSError:
        remote = None
    return str(remote[0]) if remote else "?"


async def _close(closer: Any) -> None:
    try:
        await closer.close()
    except Exception:  # noqa: BLE001 - the socket may already be gone; nothing to tell
        logger.debug("closing a refused inbound connection failed")

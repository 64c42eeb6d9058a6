"""Circuit relay v2 (``libp2p.relay.circuit_v2``), behind ``NetConfig.relay_hop`` /
``NetConfig.relay_client``.

``relay_hop`` makes this node serve reservations and relay circuits for others (a
well-connected node, e.g. a home server). ``relay_client`` registers the *stop* side,
so that peers can reach us through a relay we hold a reservation on, and a
:class:`RelayDialer` that dials ``…/p2p/<relay>/p2p-circuit/p2p/<target>`` explicitly:
py-libp2p's normal dialer ignores relay addresses. See docs/networking.md for what was
verified and what was not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import trio
from libp2p.abc import IHost, INetConn, INetStream
from libp2p.exceptions import BaseLibp2pError
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL_ID
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.tools.anyio_service import background_trio_service
from libp2p.tools.constants import MAX_READ_LEN
from multiaddr import Multiaddr

from p2pchat.errors import PeerUnreachableError

from ._errors import ErrorTable, map_exceptions
from .config import NetConfig

__all__ = ["HOP_PROTOCOL_ID", "CircuitRelay", "RelayDialer", "relay_limits", "start_relay"]

logger = logging.getLogger(__name__)


_RELAY_ERRORS: ErrorTable = [
    (ConnectionError, PeerUnreachableError),
    (OSError, PeerUnreachableError),
    (BaseLibp2pError, PeerUnreachableError),
    (trio.TooSlowError, PeerUnreachableError),
]


class RelayDialer:
    """Reservations on relays and dials through them (``relay_client``)."""

    def __init__(self, host: IHost, transport: CircuitV2Transport) -> None:
        self._host = host
        self._transport = transport

    async def reserve(self, relay_peer_id: str) -> float:
        """Ask a connected relay to accept circuits for us (so peers can reach us); returns
        when the reservation expires (Unix seconds, as the relay said)."""
        relay = ID.from_base58(relay_peer_id)
        # Our reachability depends on this connection: never trim it.
        self._host.get_network().protect(relay, "relay")
        with map_exceptions(_RELAY_ERRORS, what="relay reservation"):
            stream = await self._host.new_stream(relay, [HOP_PROTOCOL_ID])
            try:
                accepted = await self._transport._make_reservation(stream, relay)
            finally:
                await stream.close()
        if not accepted:
            raise PeerUnreachableError("the relay refused the reservation")
        expires = self._transport._reservations.get(relay)
        return float(expires) if expires else time.time() + 60.0

    async def dial(self, relay_addr: str, target_peer_id: str) -> None:
        """Open a relayed connection to ``target_peer_id`` via ``relay_addr`` (with /p2p/)."""
        circuit = Multiaddr(f"{relay_addr}/p2p-circuit/p2p/{target_peer_id}")
        with map_exceptions(_RELAY_ERRORS, what="relayed dial"):
            await self._transport.dial(circuit)

    async def dial_circuit(self, circuit: str) -> INetConn:
        """Dial a full ``…/p2p/<relay>/p2p-circuit/p2p/<target>`` address (for our dialer)."""
        return await self._transport.dial(Multiaddr(circuit))


class CircuitRelay(CircuitV2Protocol):
    """py-libp2p's circuit relay v2 with its byte copy replaced (docs/networking.md,
    "Behind NAT", half-dead circuits).

    Upstream ``_relay_data`` (0.8.1) copies one direction of a circuit and, when it ends,
    closes the streams it finds in ``self._active_relays`` under a *peer id*, an entry
    every circuit from or to that peer overwrites: the end of one circuit half-closes
    another circuit sharing a peer (or nothing), and a circuit whose entries are gone is
    never closed at all; its other direction keeps running (a half-dead circuit). Ours
    closes exactly its own circuit's streams: a clean end of stream (``StreamEOF``) is
    passed on as a half-close, as in go-libp2p; anything else (a reset, a write that
    timed out, the duration or data limit) resets both streams, which also ends the
    other direction, so both endpoints see the circuit end.
    """

    #: Circuit directions being copied now, and ended (two per circuit).
    copies_open = 0
    copies_ended = 0

    async def _relay_data(
        self,
        src_stream: INetStream,
        dst_stream: INetStream,
        peer_id: ID,
        deadline: float | None = None,
        circuit_data_limit: list[int] | None = None,
    ) -> None:
        del peer_id  # upstream's key into _active_relays, which we do not use
        clean = False
        self.copies_open += 1
        try:
            while deadline is None or time.monotonic() <= deadline:
                try:
                    data = await src_stream.read(MAX_READ_LEN)
                except StreamEOF:
                    data = b""
                if not data:
                    clean = True
                    break
                if circuit_data_limit is not None:
                    if len(data) > circuit_data_limit[0]:
                        logger.info("a relayed circuit reached its data limit")
                        break
                    circuit_data_limit[0] -= len(data)
                with trio.fail_after(self.write_timeout):
                    await dst_stream.write(data)
        except (BaseLibp2pError, OSError, trio.TooSlowError) as exc:
            logger.debug("a relayed circuit ends: %r", exc)
        finally:
            for key, pair in list(self._active_relays.items()):
                if src_stream in pair or dst_stream in pair:
                    del self._active_relays[key]  # upstream's bookkeeping, ours to drop
            with trio.CancelScope(shield=True), trio.move_on_after(self.close_timeout):
                if clean:
                    await self._close_stream(dst_stream)
                else:
                    for stream in (src_stream, dst_stream):
                        with suppress(BaseLibp2pError, OSError):
                            await stream.reset()
            self.copies_open -= 1
            self.copies_ended += 1


def relay_limits(config: NetConfig) -> RelayLimits:
    """py-libp2p's limits for the hop service, from ``NetConfig.relay_limits``."""
    limits = config.relay_limits
    return RelayLimits(
        duration=limits.circuit_duration,
        data=limits.circuit_bytes,
        max_circuit_conns=limits.max_circuits,
        max_reservations=limits.max_reservations,
        reservation_ttl=limits.reservation_ttl,
    )


@asynccontextmanager
async def start_relay(
    host: IHost, config: NetConfig
) -> AsyncIterator[tuple[CircuitRelay, RelayDialer | None]]:
    """Run the relay protocol for the block; yield it and a dialer when ``relay_client``."""
    protocol = CircuitRelay(host, limits=relay_limits(config), allow_hop=config.relay_hop)
    roles = RelayRole.STOP | (RelayRole.HOP if config.relay_hop else RelayRole(0))
    if config.relay_client:
        roles |= RelayRole.CLIENT
    async with background_trio_service(protocol):
        dialer = None
        if config.relay_client:
            transport = CircuitV2Transport(host, protocol, RelayConfig(roles=roles))
            dialer = RelayDialer(host, transport)
        yield protocol, dialer

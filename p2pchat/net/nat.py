"""NAT traversal services of a libp2p node, started together (docs/networking.md, "Behind NAT").

* **AutoNAT** (:mod:`.reachability`): we answer dial-back requests (``NetConfig.autonat``)
  and ask connected peers to dial us back, which tells us ``public`` or ``private``.
* **Relay service**: circuit relay v2 *hop* within ``NetConfig.relay_limits``
  (``relay_hop``); its handler is withdrawn while we are known to be private (nobody
  could reach a relay behind NAT) and restored when we are public again.
* **Automatic relays** (:mod:`.autorelay`): while private, reservations with a few relays;
  their relayed addresses are advertised (identify, identify/push, so the DHT's peer
  routing carries them) and our dialer dials such addresses through the relay transport.
* **Hole punching**: py-libp2p's DCUtR service (``hole_punching``) tries to upgrade every
  relayed connection to a direct one (simultaneous TCP open from our listening port).
* **UPnP** (``upnp``, opt-in): asks the router for a port mapping of our listening port.
* **Liveness** (:mod:`._liveness`): relayed connections and our relays' connections are
  pinged with a deadline; the dead are closed, relayed ones to peers we care about redialled.

A :class:`ReachabilityChanged` event is emitted when the status or the set of relayed
addresses changes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.abc import IHost
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr

from ._liveness import Liveness
from .autorelay import AutoRelay
from .base import ReachabilityChanged
from .config import NetConfig
from .reachability import DialBackServer, Reachability, ReachabilityTracker, is_relayed
from .relay import HOP_PROTOCOL_ID, CircuitRelay, RelayDialer, start_relay

__all__ = ["NatServices", "start_nat"]

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class NatServices:
    relay: RelayDialer | None = None
    relay_service: CircuitRelay | None = None
    tracker: ReachabilityTracker | None = None
    autorelay: AutoRelay | None = None
    hole_punch: Any = None
    autonat_server: DialBackServer | None = None
    liveness: Liveness | None = None
    upnp_mapped: str | None = None
    started_at: float = 0.0

    @property
    def reachability(self) -> Reachability:
        return self.tracker.status if self.tracker else Reachability.UNKNOWN

    def statistics(self, host: IHost) -> dict[str, Any]:
        stats: dict[str, Any] = {"reachability": self.reachability.value}
        if self.tracker is not None:
            stats.update(self.tracker.statistics())
        if self.autorelay is not None:
            stats.update(self.autorelay.statistics())
            first = self.autorelay.first_reserved_at
            stats["reachable_via_relay_after_s"] = (
                None if first is None else round(first - self.started_at, 3)
            )
        if self.autonat_server is not None:
            stats.update(self.autonat_server.stats)
        if self.liveness is not None:
            stats.update(self.liveness.stats)
        if self.relay_service is not None:
            stats["relay_copies_open"] = self.relay_service.copies_open
            stats["relay_copies_ended"] = self.relay_service.copies_ended
        if self.hole_punch is not None:
            direct: set[Any] = getattr(self.hole_punch, "_direct_connections", set())
            attempts = getattr(self.hole_punch, "_hole_punch_attempts", {})
            stats["hole_punch_attempted_peers"] = len(attempts)
            stats["hole_punch_direct_peers"] = len(direct)
        stats["paths"] = connection_paths(host)
        stats["upnp_mapping"] = self.upnp_mapped
        return stats


def connection_paths(host: IHost) -> dict[str, str]:
    """``direct`` or ``relayed`` for each connected peer (direct wins when both exist)."""
    network: Any = host.get_network()
    paths = {}
    for peer in host.get_connected_peers():
        conns = [c for c in network.get_connections(peer) if not c.is_closed]
        if conns:
            relayed = all(is_relayed(c) for c in conns)
            paths[peer.to_base58()] = "relayed" if relayed else "direct"
    return paths


@asynccontextmanager
async def start_nat(
    host: IHost,
    config: NetConfig,
    *,
    set_relay_dial: Callable[[RelayDialer], None],
    emit: Callable[[ReachabilityChanged], None],
) -> AsyncIterator[NatServices]:
    """Run the NAT services for the block."""
    services = NatServices(started_at=trio.current_time())
    extra_addrs: list[str] = []  # relayed and UPnP-mapped addresses we advertise
    async with AsyncExitStack() as stack:
        protocol = None
        if config.relay_hop or config.relay_client:
            protocol, services.relay = await stack.enter_async_context(start_relay(host, config))
            services.relay_service = protocol
            if services.relay is not None:
                set_relay_dial(services.relay)
        if config.hole_punching and config.relay_client:
            from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol

            services.hole_punch = DCUtRProtocol(host, dial_timeout=5)
            await stack.enter_async_context(background_trio_service(services.hole_punch))
        nursery = await stack.enter_async_context(trio.open_nursery())

        def changed() -> None:
            emit(
                ReachabilityChanged(
                    reachability=services.reachability.value,
                    relayed_addrs=tuple(extra_addrs),
                )
            )

        def on_status(status: Reachability) -> None:
            if protocol is not None and config.relay_hop:
                # A relay nobody can reach is no use; py-libp2p has no switch for it.
                if status is Reachability.PRIVATE:
                    host.remove_stream_handler(HOP_PROTOCOL_ID)
                else:
                    host.set_stream_handler(HOP_PROTOCOL_ID, protocol._handle_hop_stream)
            if services.autorelay is not None:
                services.autorelay.wake.set()
            changed()

        def advertise() -> None:
            if not extra_addrs:
                _advertise_extra(host, extra_addrs)  # once: py-libp2p's is left alone till then
            relayed = services.autorelay.relayed_addrs if services.autorelay else []
            extra_addrs[:] = ([services.upnp_mapped] if services.upnp_mapped else []) + relayed
            logger.info("advertising extra addresses: %s", ", ".join(extra_addrs) or "none")
            nursery.start_soon(_push_identify, host)
            changed()

        def on_relays(addrs: list[str]) -> None:
            del addrs
            advertise()

        if config.autonat:
            services.autonat_server = DialBackServer(host)
            services.tracker = ReachabilityTracker(
                host,
                services.autonat_server,
                interval=config.autonat_interval,
                on_change=on_status,
            )
            nursery.start_soon(services.tracker.run)
            relay = services.relay
            if config.auto_relay and relay is not None:
                tracker = services.tracker
                services.autorelay = AutoRelay(
                    host,
                    relay.reserve,
                    want=config.auto_relays,
                    status=lambda: tracker.status,
                    on_change=on_relays,
                )
                nursery.start_soon(services.autorelay.run)
        if protocol is not None and config.relay_ping_interval > 0:
            services.liveness = Liveness(
                host,
                interval=config.relay_ping_interval,
                timeout=config.relay_ping_timeout,
                failures=config.relay_ping_failures,
                relays=lambda: (
                    [h.relay for h in services.autorelay.held()] if services.autorelay else []
                ),
                redial_timeout=2 * config.dial_timeout,
            )
            nursery.start_soon(services.liveness.run)
        mapping = None
        if config.upnp:
            from .upnp import map_listen_port

            mapping = await map_listen_port(host)
            if mapping is not None:
                services.upnp_mapped = mapping[1]
                advertise()
        try:
            yield services
        finally:
            nursery.cancel_scope.cancel()
            if mapping is not None:
                from .upnp import unmap

                with trio.CancelScope(shield=True), trio.move_on_after(5.0):
                    await unmap(*mapping)


def _advertise_extra(host: IHost, extra: list[str]) -> None:
    """Make ``host.get_addrs()`` (identify, our records, ``listen_addrs``) include ``extra``.

    py-libp2p 0.8.1's ``BasicHost.get_addrs`` strips "the" ``/p2p/`` component of every
    address before appending ours, and for ``…/p2p/<relay>/p2p-circuit`` it strips the
    relay's and everything after it: a relayed address becomes the *relay's* address with
    *our* peer id. So relayed addresses are appended after it, as an instance attribute
    (as :class:`~p2pchat.net._dialer.Dialer` replaces ``swarm.dial_peer``). Upstream:
    "get_addrs should only strip a trailing /p2p/<id>; circuit addresses from an
    addrs_factory are mangled into the relay's address with our peer id."
    """
    if getattr(host.get_addrs, "_p2pchat_extra", False):
        return
    plain = host.get_addrs
    suffix = f"/p2p/{host.get_id()}"

    def get_addrs() -> list[Multiaddr]:
        return [*plain(), *(Multiaddr(a + suffix) for a in extra)]

    get_addrs._p2pchat_extra = True  # type: ignore[attr-defined]
    host.get_addrs = get_addrs  # type: ignore[method-assign]


async def _push_identify(host: IHost) -> None:
    """Tell connected peers our new addresses (identify/push), best effort."""
    push = getattr(host, "_push_identify_to_all_peers", None)
    if push is not None:
        with trio.move_on_after(10.0):
            await push()

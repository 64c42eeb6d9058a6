"""Opt-in UPnP port mapping (``NetConfig.upnp``) with py-libp2p's ``UpnpManager``.

Where the home router offers UPnP IGD, a node behind it asks for its listening TCP port
to be forwarded, and advertises ``/ip4/<external ip>/tcp/<port>``; AutoNAT then confirms
(or not) that it is reachable there. Without a UPnP router nothing changes. Tested with
Debian's miniupnpd in a namespace router (``tests/integration/test_nat_traversal.py``).

The gateway's external address is judged by our own address rules (:func:`._addrs.classify`),
not by py-libp2p's: ``UpnpManager.discover`` refuses it when ``ipaddress.is_private``, which
counts the documentation ranges (our test world's internet) as private and misses carrier-grade
NAT (100.64.0.0/10 is not ``is_private``, so a router behind CGNAT got its unreachable address
advertised). Upstream-ready: *"UpnpManager.discover's double-NAT check uses
ipaddress.is_private: it lets 100.64.0.0/10 (RFC 6598 shared address space, CGNAT) through
and has no way to accept a test network's documentation addresses; check is_global (plus
100.64.0.0/10) and let the caller decide."*
"""

from __future__ import annotations

import logging
from typing import Any

from libp2p.abc import IHost

from ._addrs import AddrClass, classify, split_ip_port

__all__ = ["map_listen_port", "unmap"]

logger = logging.getLogger(__name__)


async def map_listen_port(host: IHost) -> tuple[Any, str] | None:
    """Map our first TCP listening port; the manager (to unmap) and the external address."""
    from libp2p.discovery.upnp.upnp import UpnpManager

    ports = [p[2] for a in host.get_transport_addrs() if (p := split_ip_port(str(a)))]
    if not ports:
        return None
    manager = UpnpManager()
    # False also when py-libp2p judged the external address private (see the module doc);
    # it has learnt the address (and the gateway's LAN side) by then.
    await manager.discover()
    external = manager.get_external_ip()
    if external is None:
        logger.info("UPnP: no Internet gateway device answered")
        return None
    if classify(f"/ip4/{external}/tcp/{ports[0]}") is not AddrClass.PUBLIC:
        logger.info("UPnP: the gateway's external address %s is not public (double NAT)", external)
        return None
    if not await manager.add_port_mapping(ports[0], "TCP"):
        logger.info("UPnP: the gateway refused to map TCP port %d", ports[0])
        return None
    logger.info("UPnP: TCP port %d mapped at %s", ports[0], external)
    return manager, f"/ip4/{external}/tcp/{ports[0]}"


async def unmap(manager: Any, addr: str) -> None:
    parsed = split_ip_port(addr)
    if parsed is not None:
        await manager.remove_port_mapping(parsed[2], "TCP")

"""Opt-in UPnP port mapping (``NetConfig.upnp``) with py-libp2p's ``UpnpManager``.

Where the home router offers UPnP IGD, a node behind it asks for its listening TCP port
to be forwarded, and advertises ``/ip4/<external ip>/tcp/<port>``; AutoNAT then confirms
(or not) that it is reachable there. Without a UPnP router nothing changes. Untested
against a real router here: the namespace test world has none (docs/networking.md).
"""

from __future__ import annotations

import logging
from typing import Any

from libp2p.abc import IHost

from ._addrs import split_ip_port

__all__ = ["map_listen_port", "unmap"]

logger = logging.getLogger(__name__)


async def map_listen_port(host: IHost) -> tuple[Any, str] | None:
    """Map our first TCP listening port; the manager (to unmap) and the external address."""
    from libp2p.discovery.upnp.upnp import UpnpManager

    ports = [p[2] for a in host.get_transport_addrs() if (p := split_ip_port(str(a)))]
    if not ports:
        return None
    manager = UpnpManager()
    if not await manager.discover():
        logger.info("UPnP: no Internet gateway device answered")
        return None
    if not await manager.add_port_mapping(ports[0], "TCP"):
        logger.info("UPnP: the gateway refused to map TCP port %d", ports[0])
        return None
    external = manager.get_external_ip()
    if external is None:
        return None
    logger.info("UPnP: TCP port %d mapped at %s", ports[0], external)
    return manager, f"/ip4/{external}/tcp/{ports[0]}"


async def unmap(manager: Any, addr: str) -> None:
    parsed = split_ip_port(addr)
    if parsed is not None:
        await manager.remove_port_mapping(parsed[2], "TCP")

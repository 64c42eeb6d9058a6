"""mDNS discovery (opt-in): announce our addresses on the LAN, report peers nearby.

Speaks libp2p's mDNS convention (service ``_p2p._udp.local.``, a random instance name,
TXT entries ``dnsaddr=<multiaddr>/p2p/<peer id>``), so other libp2p nodes see us.

Two threads meet here, which is why this module exists instead of py-libp2p's own
``enable_mDNS``: zeroconf calls its listener on *its* thread, and registering a service
blocks for seconds (it probes the name). So registration runs in a worker thread via
``trio.to_thread``, and every discovery crosses back to trio through
``trio.from_thread.run_sync`` with the token of the trio run that started us
(:class:`HandOver`). If trio has already shut down, the discovery is dropped.

Interfaces are pinned to the configured listen hosts when they are specific addresses.
With a wildcard listen host (``0.0.0.0``, which py-libp2p advertises verbatim) zeroconf's
default interface choice is used and the announced addresses are the machine's
non-loopback IPv4 addresses: a peer on the LAN can dial neither ``0.0.0.0`` nor our
``127.0.0.1``, and py-libp2p dials only one TCP address per peer.
"""

from __future__ import annotations

import logging
import secrets
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import trio
from zeroconf import InterfaceChoice, ServiceBrowser, ServiceInfo, ServiceListener, Zeroconf

from ._addrs import expand_wildcards, interface_ipv4s
from .base import PeerInfo

__all__ = [
    "SERVICE_TYPE",
    "announce_addrs",
    "parse_announcement",
    "HandOver",
    "MdnsListener",
    "run_mdns",
]

logger = logging.getLogger(__name__)

SERVICE_TYPE = "_p2p._udp.local."
_RESOLVE_TIMEOUT_MS = 3000
_WILDCARDS = {"0.0.0.0", "::"}  # noqa: S104 - names to recognise, not to bind


def parse_announcement(
    properties: Mapping[bytes, bytes | None], *, own_peer_id: str
) -> PeerInfo | None:
    """The peer a TXT record announces, or ``None`` (ours, malformed, or several peers).

    Pure, because everything in an mDNS packet is untrusted input from the LAN.
    """
    peers: dict[str, list[str]] = {}
    for name, value in properties.items():
        if not name.startswith(b"dnsaddr") or value is None:
            continue
        try:
            text = value.decode("ascii")
        except UnicodeDecodeError:
            continue
        addr, sep, peer = text.rpartition("/p2p/")
        if not sep or not addr.startswith("/") or not peer.isalnum():
            continue
        peers.setdefault(peer, []).append(addr)
    if len(peers) != 1:
        return None
    ((peer, addrs),) = peers.items()
    if peer == own_peer_id:
        return None
    return PeerInfo(peer, tuple(sorted(set(addrs))), name=_announced_name(properties))


#: Longest display name taken from an announcement (bytes of UTF-8).
MAX_NAME = 64


def _announced_name(properties: Mapping[bytes, bytes | None]) -> str | None:
    """The optional ``name`` TXT entry: printable text only, at most 64 bytes."""
    raw = properties.get(b"name")
    if not raw or len(raw) > MAX_NAME:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() and text.strip() else None


def announce_addrs(listen_addrs: Sequence[str], interface_ips: Sequence[str]) -> list[str]:
    """Our listen addresses with ``/ip4/0.0.0.0`` expanded to concrete LAN IPv4 addresses."""
    return expand_wildcards(listen_addrs, interface_ips, loopback=False)


class HandOver:
    """Called on any thread; runs ``deliver(peer)`` on the trio thread that made it."""

    def __init__(self, deliver: Callable[[PeerInfo], None]) -> None:
        self._deliver = deliver
        self._token = trio.lowlevel.current_trio_token()

    def __call__(self, peer: PeerInfo) -> None:
        try:
            trio.from_thread.run_sync(self._deliver, peer, trio_token=self._token)
        except trio.RunFinishedError:
            logger.debug("mDNS discovery after shutdown dropped")


class MdnsListener(ServiceListener):
    """zeroconf's listener; runs on zeroconf's thread, resolves, then hands over."""

    def __init__(self, *, own_peer_id: str, hand_over: Callable[[PeerInfo], None]) -> None:
        self._own_peer_id = own_peer_id
        self._hand_over = hand_over

    def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        info = zc.get_service_info(type_, name, timeout=_RESOLVE_TIMEOUT_MS)
        if info is None:
            return
        peer = parse_announcement(info.properties, own_peer_id=self._own_peer_id)
        if peer is not None:
            self._hand_over(peer)

    def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self.add_service(zc, type_, name)

    def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        return None


def _service_info(
    peer_id: str, addrs: list[str], port: int, hosts: list[str], name: str | None = None
) -> ServiceInfo:
    properties: dict[bytes, bytes] = {
        (b"dnsaddr" if i == 0 else f"dnsaddr{i}".encode()): f"{addr}".encode()
        for i, addr in enumerate(a if "/p2p/" in a else f"{a}/p2p/{peer_id}" for a in addrs)
    }
    if name and len(name.encode()) <= MAX_NAME:
        properties[b"name"] = name.encode()
    name = f"{secrets.token_hex(16)}.{SERVICE_TYPE}"
    packed = [socket.inet_aton(h) for h in hosts if "." in h]
    return ServiceInfo(
        SERVICE_TYPE,
        name,
        port=port,
        addresses=packed,
        properties=properties,
        server=f"{secrets.token_hex(8)}.local.",
    )


async def run_mdns(
    *,
    peer_id: str,
    listen_addrs: list[str],
    listen_hosts: tuple[str, ...],
    port: int,
    deliver: Callable[[PeerInfo], None],
    name: str | None = None,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Announce and browse until cancelled; ``deliver`` runs on the trio thread."""
    task_status.started()
    specific = [h for h in listen_hosts if h not in _WILDCARDS]
    if specific:
        interfaces: Any = specific
        ips = specific
    else:
        interfaces = InterfaceChoice.Default
        ips = [
            ip for ip in await trio.to_thread.run_sync(interface_ipv4s) if not ip.startswith("127.")
        ]
    try:
        zc = await trio.to_thread.run_sync(lambda: Zeroconf(interfaces=interfaces))
    except OSError as exc:  # no multicast on this machine: run without discovery
        logger.warning("mDNS unavailable (%s); continuing without it", type(exc).__name__)
        return
    info = _service_info(peer_id, announce_addrs(listen_addrs, ips), port, ips, name)
    browser: ServiceBrowser | None = None
    try:
        await trio.to_thread.run_sync(zc.register_service, info)
        listener = MdnsListener(own_peer_id=peer_id, hand_over=HandOver(deliver))
        browser = ServiceBrowser(zc, SERVICE_TYPE, listener=listener)
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_close, zc, info, browser)


def _close(zc: Zeroconf, info: ServiceInfo, browser: ServiceBrowser | None) -> None:
    if browser is not None:
        browser.cancel()
    zc.unregister_service(info)
    zc.close()

"""Address hygiene: what a node advertises, what it dials, and in which order.

Pure functions over multiaddr strings (plus :func:`local_interfaces`, which reads the
machine's interfaces). The rules, and why (docs/networking.md, "Addresses"):

* **Advertise** only addresses another host can use. A wildcard listener
  (``/ip4/0.0.0.0``, which py-libp2p advertises verbatim and which Linux dials as
  *this* machine) becomes the interfaces' addresses; loopback and link-local
  addresses are never advertised, except loopback when it is all a node has (it
  listens on 127.0.0.1 on purpose, e.g. several nodes on one machine).
* **Never dial ourselves**: an address whose endpoint is one of our own listeners
  (any local IP, loopback or wildcard at one of our listening ports, or one of the
  addresses we advertise) reaches this node, fails the Noise handshake on the peer id,
  and used to poison py-libp2p's per-peer negative cache for the peer's real address.
* **Dial order**: public addresses first, then the peer's observed IP (where we saw its
  connections come from) at its advertised ports, then private addresses on a network
  we share, then other private addresses, loopback last; addresses that failed recently
  go after those that did not. Unspecified addresses and relay circuits (dialled by the
  relay transport, :mod:`p2pchat.net.relay`) are never dialled directly.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

import ifaddr

__all__ = [
    "AddrClass",
    "LocalInterfaces",
    "classify",
    "local_interfaces",
    "interface_ipv4s",
    "expand_wildcards",
    "advertised",
    "is_own",
    "dial_order",
    "split_ip_port",
]

_WILDCARD = "/ip4/0.0.0.0/"
_WILDCARD6 = "/ip6/::/"


class AddrClass(IntEnum):
    """An address's kind; the value is its rank in the dial order (lower first)."""

    PUBLIC = 0
    OBSERVED = 1  # a peer's observed IP at one of its advertised ports
    LAN = 2  # private, on a network one of our interfaces is on
    PRIVATE = 3  # private (RFC 1918, CGNAT, ULA), elsewhere
    LOOPBACK = 4
    LINK_LOCAL = 5
    UNSPECIFIED = 6  # 0.0.0.0 / ::, a listener's wildcard, never a destination
    RELAY = 7  # /p2p-circuit: only the relay transport dials these
    OTHER = 8  # DNS names, other transports: left to py-libp2p as they are


@dataclass(frozen=True, slots=True)
class LocalInterfaces:
    """This machine's IP networks (address with prefix), e.g. ``198.51.100.7/24``."""

    networks: tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...] = ()

    @property
    def ips(self) -> list[str]:
        return [str(n.ip) for n in self.networks]

    def shares_network(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(ip.version == n.version and ip in n.network for n in self.networks)


def local_interfaces() -> LocalInterfaces:
    """The machine's interface addresses (IPv4 and IPv6, loopback included)."""
    found: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            try:
                found.append(ipaddress.ip_interface(f"{text.split('%')[0]}/{ip.network_prefix}"))
            except ValueError:
                continue
    return LocalInterfaces(tuple(dict.fromkeys(found)))


def interface_ipv4s() -> list[str]:
    """The IPv4 addresses of this machine's interfaces (loopback included)."""
    return [ip for ip in local_interfaces().ips if ip.count(".") == 3]


def split_ip_port(addr: str) -> tuple[str, str, int] | None:
    """``("ip4" | "ip6", ip, tcp port)`` of a ``/ip4|ip6/<ip>/tcp/<port>[/...]`` address."""
    parts = addr.split("/")
    if len(parts) < 5 or parts[0] != "" or parts[1] not in ("ip4", "ip6") or parts[3] != "tcp":
        return None
    try:
        port = int(parts[4])
        ipaddress.ip_address(parts[2])
    except ValueError:
        return None
    return parts[1], parts[2], port


def _endpoint_only(addr: str) -> str:
    """``/ip4/1.2.3.4/tcp/5`` for ``/ip4/1.2.3.4/tcp/5/p2p/<id>`` (one address, one dial);
    anything else (relay circuits, other transports) unchanged."""
    endpoint = split_ip_port(addr)
    if endpoint is None or "/p2p-circuit" in addr:
        return addr
    family, ip, port = endpoint
    rest = addr.split("/", 5)[5] if addr.count("/") > 4 else ""
    return addr if rest and not rest.startswith("p2p/") else f"/{family}/{ip}/tcp/{port}"


def classify(addr: str, local: LocalInterfaces | None = None) -> AddrClass:
    """The kind of a multiaddr (``LAN`` needs ``local`` to know our networks)."""
    if "/p2p-circuit" in addr:
        return AddrClass.RELAY
    endpoint = split_ip_port(addr)
    if endpoint is None:
        return AddrClass.OTHER
    ip = ipaddress.ip_address(endpoint[1])
    if ip.is_unspecified:
        return AddrClass.UNSPECIFIED
    if ip.is_loopback:
        return AddrClass.LOOPBACK
    if ip.is_link_local:
        return AddrClass.LINK_LOCAL
    # Documentation ranges (198.51.100.0/24, 203.0.113.0/24, ...) count as public:
    # they are what our namespace tests use for "the internet".
    if ip.is_private and not _is_documentation(ip):
        if local is not None and local.shares_network(ip):
            return AddrClass.LAN
        return AddrClass.PRIVATE
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return AddrClass.PRIVATE
    return AddrClass.PUBLIC


_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_DOCUMENTATION = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)


def _is_documentation(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return any(ip.version == n.version and ip in n for n in _DOCUMENTATION)


def expand_wildcards(
    listen_addrs: Sequence[str], interface_ips: Sequence[str], *, loopback: bool
) -> list[str]:
    """``listen_addrs`` with ``/ip4/0.0.0.0`` replaced by each IPv4 address among
    ``interface_ips`` (``127.*`` only if ``loopback``); an IPv6 wildcard is dropped;
    order kept, no repeats."""
    out: list[str] = []
    for addr in listen_addrs:
        if addr.startswith(_WILDCARD):
            rest = addr[len(_WILDCARD) - 1 :]
            out += [
                f"/ip4/{ip}{rest}"
                for ip in interface_ips
                if ip.count(".") == 3 and (loopback or not ip.startswith("127."))
            ]
        elif not addr.startswith(_WILDCARD6):
            out.append(addr)
    return list(dict.fromkeys(out))


def advertised(candidates: Iterable[str], local: LocalInterfaces) -> list[str]:
    """What we tell other hosts, from our listeners and confirmed observed addresses.

    Wildcards are expanded to the interfaces' IPv4 addresses; unspecified, loopback and
    link-local addresses are dropped, except loopback when nothing else remains (a node
    listening on 127.0.0.1 on purpose can only be reached there). Order: public first,
    then private, then loopback; stable within a kind; no repeats.
    """
    expanded = expand_wildcards(list(candidates), local.ips, loopback=True)
    kinds = {addr: classify(addr, local) for addr in expanded}
    usable = [
        a
        for a, kind in kinds.items()
        if kind not in (AddrClass.LOOPBACK, AddrClass.LINK_LOCAL, AddrClass.UNSPECIFIED)
    ]
    if not usable:
        usable = [a for a, kind in kinds.items() if kind is AddrClass.LOOPBACK]
    return sorted(usable, key=lambda a: kinds[a])


def is_own(addr: str, *, listening: Collection[str], local: LocalInterfaces) -> bool:
    """Whether dialling ``addr`` would reach this node (one of our listeners).

    ``listening`` holds our listeners and advertised addresses. A wildcard listener
    answers on every local IP (and loopback) at its port.
    """
    endpoint = split_ip_port(addr)
    if endpoint is None:
        return False
    family, ip, port = endpoint
    target = ipaddress.ip_address(ip)
    local_ips = {ipaddress.ip_address(i) for i in local.ips}
    for own in listening:
        mine = split_ip_port(own)
        if mine is None or mine[2] != port or mine[0] != family:
            continue
        own_ip = ipaddress.ip_address(mine[1])
        if own_ip == target:
            return True
        if own_ip.is_unspecified and (
            target.is_unspecified or target.is_loopback or target in local_ips
        ):
            return True
        if target.is_unspecified and (own_ip.is_loopback or own_ip in local_ips):
            return True  # 0.0.0.0:PORT is dialled as this machine
    return False


def dial_order(
    addrs: Iterable[str],
    *,
    listening: Collection[str],
    local: LocalInterfaces,
    observed_ips: Collection[str] = (),
    recently_failed: Collection[str] = (),
) -> list[str]:
    """The addresses worth dialling for a peer, best first (see the module docstring).

    ``observed_ips`` are IPs we saw the peer's connections come from: each is tried at
    the TCP ports the peer advertises (``OBSERVED`` rank). Never returns one of our own
    addresses, an unspecified address or a relay circuit.
    """
    given = list(dict.fromkeys(_endpoint_only(a) for a in addrs))
    ranked: dict[str, AddrClass] = {}
    for addr in given:
        kind = classify(addr, local)
        if kind in (AddrClass.UNSPECIFIED, AddrClass.RELAY):
            continue
        if is_own(addr, listening=listening, local=local):
            continue
        ranked[addr] = kind
    ports = [a for a in given if classify(a) is not AddrClass.RELAY]
    for ip in observed_ips:
        family = "ip6" if ":" in ip else "ip4"
        for addr in ports:
            endpoint = split_ip_port(addr)
            if endpoint is None or endpoint[0] != family:
                continue
            candidate = f"/{family}/{ip}/tcp/{endpoint[2]}"
            kind = classify(candidate, local)
            if candidate in ranked or kind in (AddrClass.UNSPECIFIED, AddrClass.RELAY):
                continue
            if is_own(candidate, listening=listening, local=local):
                continue
            ranked[candidate] = (
                AddrClass.OBSERVED if kind is AddrClass.PUBLIC else min(kind, AddrClass.LAN)
            )
    failed = set(recently_failed)
    order = list(ranked)
    return sorted(order, key=lambda a: (a in failed, ranked[a], order.index(a)))

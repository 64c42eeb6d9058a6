"""Concrete addresses for wildcard listeners (``/ip4/0.0.0.0`` is not dialable)."""

from __future__ import annotations

from collections.abc import Sequence

import ifaddr

__all__ = ["expand_wildcards", "interface_ipv4s"]

_WILDCARD = "/ip4/0.0.0.0/"


def interface_ipv4s() -> list[str]:
    """The IPv4 addresses of this machine's interfaces (loopback included)."""
    return [
        ip.ip
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
        if isinstance(ip.ip, str) and ip.ip.count(".") == 3
    ]


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
        elif not addr.startswith("/ip6/::/"):
            out.append(addr)
    return list(dict.fromkeys(out))

"""Are we publicly reachable? AutoNAT v1 (``/libp2p/autonat/1.0.0``) as server and client.

py-libp2p 0.8.1's :class:`~libp2p.host.autonat.autonat.AutoNATService` speaks the protocol,
but its server cannot tell a reachable peer from one behind NAT:

* it dials back with ``host.connect``, which returns at once because the requester is
  already connected (the request came over that connection): **every** dial-back
  "succeeds", so a node behind NAT is told it is public;
* it only dials addresses whose IP *is* the observed IP, so a node behind NAT (which
  advertises its private interface address) gets ``E_DIAL_REFUSED``, never the
  ``E_DIAL_ERROR`` that would tell it "private".

:class:`DialBackServer` fixes both in a subclass: it dials the requester's observed IP at
the TCP ports it advertises, on a *fresh* TCP connection (never the swarm's), verifies the
peer id with the Noise handshake, and closes it. At most a few dial-backs run at once.
Upstream description: "AutoNATService._try_dial uses host.connect, which reuses the
existing connection to the requester, so every dial-back succeeds; it should dial a new
transport connection (as go-libp2p's dialer with ForceDirectDial+no reuse does). Addresses
should be the observed IP combined with the advertised ports, not only exact IP matches."

:class:`ReachabilityTracker` asks connected peers (direct connections only) to dial us
back and keeps each server's latest verdict: ``public`` when at least one server reached
us and no more failed than succeeded, ``private`` when more failed. Refusals and servers
that do not speak AutoNAT give no verdict. py-libp2p's own aggregation wants four
agreeing servers, which a small network never has.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import trio
from libp2p.abc import IHost
from libp2p.host.autonat.autonat import AUTONAT_PROTOCOL_ID, AutoNATService
from libp2p.host.autonat.pb.autonat_pb2 import Message
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from ._addrs import split_ip_port

__all__ = [
    "AUTONAT_PROTOCOL_ID",
    "DialBackServer",
    "Reachability",
    "ReachabilityTracker",
    "is_relayed",
]

logger = logging.getLogger(__name__)

#: Dial-backs running at once on a server, addresses tried per request, time per address.
_MAX_CONCURRENT_DIALBACKS = 4
_MAX_ADDRS_PER_REQUEST = 4
_DIALBACK_TIMEOUT = 5.0
#: Servers whose verdicts we keep, and asked per round.
_MAX_SERVERS = 8
_ASK_PER_ROUND = 3


class Reachability(StrEnum):
    UNKNOWN = "unknown"
    PUBLIC = "public"
    PRIVATE = "private"


def is_relayed(conn: Any) -> bool:
    """True for a connection that runs through a circuit relay."""
    try:
        return any("/p2p-circuit" in str(a) for a in conn.get_transport_addresses())
    except (AttributeError, TypeError, ValueError):
        return False


def dialback_addrs(advertised: list[bytes], observed_ip: str | None) -> list[Multiaddr]:
    """The requester's observed IP at each TCP port it advertises (bounded, no circuits)."""
    if observed_ip is None:
        return []
    try:
        ip = ipaddress.ip_address(observed_ip)
    except ValueError:
        return []
    proto = "ip4" if ip.version == 4 else "ip6"
    out: list[Multiaddr] = []
    for raw in advertised[:32]:
        try:
            text = str(Multiaddr(raw))
        except Exception:  # noqa: BLE001, S112 - peer-supplied bytes: skip what does not parse
            continue
        parsed = split_ip_port(text) if "/p2p-circuit" not in text else None
        if parsed is None:
            continue
        candidate = Multiaddr(f"/{proto}/{ip}/tcp/{parsed[2]}")
        if candidate not in out:
            out.append(candidate)
        if len(out) >= _MAX_ADDRS_PER_REQUEST:
            break
    return out


class DialBackServer(AutoNATService):
    """py-libp2p's AutoNAT with a dial-back that tells the truth (see the module doc)."""

    def __init__(self, host: Any) -> None:
        super().__init__(host, serve=True)
        self._limit = trio.CapacityLimiter(_MAX_CONCURRENT_DIALBACKS)
        self.stats = {"dialback_requests": 0, "dialback_ok": 0, "dialback_failed": 0}

    @staticmethod
    def _filter_by_observed_ip(addrs: list[bytes], observed_ip: str | None) -> list[bytes]:
        return [a.to_bytes() for a in dialback_addrs(addrs, observed_ip)]

    async def _try_dial(self, peer_id: ID, addrs: list[bytes]) -> bytes | None:
        self.stats["dialback_requests"] += 1
        swarm: Any = self.host.get_network()
        async with self._limit:
            for raw in addrs:
                addr = Multiaddr(raw)
                with trio.move_on_after(_DIALBACK_TIMEOUT):
                    transport = swarm.transport_manager.transport_for_dialing(addr)
                    if transport is None:
                        continue
                    try:
                        conn = await transport.dial(addr)
                    except Exception as exc:  # noqa: BLE001 - any failure is a verdict
                        logger.debug("dial-back to %s failed: %s", addr, type(exc).__name__)
                        continue
                    # Closed whatever happens, also when the timeout or a shutdown cancels
                    # the handshake (a Cancelled is no Exception: the socket leaked).
                    try:
                        await swarm.upgrader.upgrade_security(conn, True, peer_id)
                    except Exception as exc:  # noqa: BLE001 - wrong peer or no handshake
                        logger.debug("dial-back handshake at %s failed: %s", addr, exc)
                        continue
                    finally:
                        await _close(conn)
                    self.stats["dialback_ok"] += 1
                    return bytes(raw)
        self.stats["dialback_failed"] += 1
        return None


async def _close(conn: Any) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(2.0):
        try:
            await conn.close()
        except Exception:  # noqa: BLE001 - closing a half-open probe connection
            logger.debug("closing a dial-back connection failed")


class ReachabilityTracker:
    """Asks connected peers to dial us back; keeps the status and reports changes."""

    def __init__(
        self,
        host: IHost,
        client: AutoNATService,
        *,
        interval: float,
        on_change: Callable[[Reachability], None],
    ) -> None:
        self._host = host
        self._client = client
        self._interval = interval
        self._on_change = on_change
        self._verdicts: dict[ID, bool] = {}
        self.status = Reachability.UNKNOWN
        self.checked_at: float | None = None
        self.changed_at: float | None = None
        self.wake = trio.Event()

    def statistics(self) -> dict[str, Any]:
        ok = sum(self._verdicts.values())
        return {
            "reachability": self.status.value,
            "autonat_servers": len(self._verdicts),
            "autonat_public_verdicts": ok,
            "autonat_private_verdicts": len(self._verdicts) - ok,
        }

    def _servers(self) -> list[ID]:
        network: Any = self._host.get_network()
        found = []
        for peer in self._host.get_connected_peers():
            conns = network.get_connections(peer)
            if conns and not all(is_relayed(c) for c in conns):
                found.append(peer)
        # Peers not asked yet first, then the others.
        found.sort(key=lambda p: p in self._verdicts)
        return found[:_ASK_PER_ROUND]

    async def check(self) -> Reachability:
        """One round: ask a few connected peers, update the status."""
        for server in self._servers():
            try:
                with trio.fail_after(_DIALBACK_TIMEOUT * _MAX_ADDRS_PER_REQUEST + 5):
                    status, _ = await self._client.query_server(server)
            except Exception as exc:  # noqa: BLE001 - no AutoNAT there, or it went away
                logger.debug("AutoNAT query to %s failed: %s", server, type(exc).__name__)
                continue
            if status == Message.OK:
                self._verdicts[server] = True
            elif status == Message.E_DIAL_ERROR:
                self._verdicts[server] = False
            while len(self._verdicts) > _MAX_SERVERS:
                self._verdicts.pop(next(iter(self._verdicts)))
        self.checked_at = trio.current_time()
        self._update()
        return self.status

    def _update(self) -> None:
        ok = sum(self._verdicts.values())
        failed = len(self._verdicts) - ok
        new = self.status
        if ok and ok >= failed:
            new = Reachability.PUBLIC
        elif failed > ok:
            new = Reachability.PRIVATE
        if new is not self.status:
            logger.info("reachability: %s (%d reached us, %d did not)", new.value, ok, failed)
            self.status = new
            self.changed_at = trio.current_time()
            self._on_change(new)

    async def run(self) -> None:
        """Check soon after the first connections, then every ``interval`` (sooner while
        the answer is unknown)."""
        rounds = 0
        while True:
            soon = not self._verdicts and rounds < 30
            with trio.move_on_after(2.0 if soon else self._interval):
                await self.wake.wait()
            self.wake = trio.Event()
            if self._host.get_connected_peers():
                rounds += 1
                await self.check()

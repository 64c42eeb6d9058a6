"""Our dialer in place of py-libp2p 0.8.1's ``Swarm.dial_peer`` (see docs/networking.md).

py-libp2p's dialer picks **one** TCP address per peer (the first in its peerstore, after
dropping ``127.*`` only if another address is left), so a peer that advertises
``/ip4/0.0.0.0/...`` or a stale address is dialled there and nowhere else; the failed
dial then puts the *peer* in a 60 s negative cache that blocks its real address too.
On two machines using the same port, dialling the advertised wildcard or loopback
address reaches the dialler itself and fails the Noise handshake on the peer id.

:class:`Dialer` is installed on the swarm instance (``swarm.dial_peer``), so every dial
goes through it: ours, the DHT's, pubsub's and the connection manager's. For each peer
it dials every usable address in :func:`~p2pchat.net._addrs.dial_order` (never one of
our own), staggered like "happy eyeballs" (the next address starts when the previous
one failed or after ``stagger`` seconds); the first connection wins and the others are
cancelled. A failure, including a peer-id mismatch, counts against that address only,
and only to try it after the others next time. When every address fails, the reasons
are kept (:meth:`Dialer.failure`) and logged once a minute per peer.

Upstream description: "Swarm.dial_peer dials a single TCP address per peer and marks the
whole peer as failed when it fails; it should try all (filtered, ranked) addresses and
keep failures per address, as go-libp2p's dial worker does. Hosts listening on 0.0.0.0
advertise 0.0.0.0 (and dialling it reaches the local host)."

The peer's relayed addresses (``/p2p-circuit``, which the swarm's TCP transport cannot
dial) come last in the same race and are dialled through the circuit relay transport
(``Dialer.relay_dial``), so that a peer behind NAT is reached through its relays by every
caller of ``dial_peer``, while its unroutable private addresses are still timing out.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.abc import INetConn
from libp2p.exceptions import BaseLibp2pError
from libp2p.network.exceptions import SwarmException
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from ._addrs import LocalInterfaces, dial_order

__all__ = ["DialFailure", "Dialer", "describe_dial_error", "relay_circuits", "remote_ip"]

logger = logging.getLogger("p2pchat.net.dial")

#: How long an address that failed is tried only after the others.
_FAILED_TTL = 60.0
#: How often a peer's failure is logged at INFO (it can be retried often).
_LOG_EVERY = 60.0
#: A surplus connection (two addresses answered) is closed within this, even when cancelled.
_CLOSE_WITHIN = 5.0
#: Addresses kept per peer in the failure report.
_MAX_REPORTED = 8
#: Relayed addresses tried per dial, and the time each may take.
_MAX_CIRCUITS = 3
_RELAY_DIAL_TIMEOUT = 10.0


def relay_circuits(peer_id: str, known: list[str]) -> list[str]:
    """The peer's relayed addresses, each as ``…/p2p/<relay>/p2p-circuit/p2p/<peer>``."""
    suffix = f"/p2p/{peer_id}"
    out = []
    for addr in known:
        base = addr[: -len(suffix)] if addr.endswith(suffix) else addr
        if not base.endswith("/p2p-circuit") or "/p2p/" not in base:
            continue
        circuit = base + suffix
        if circuit not in out:
            out.append(circuit)
    return out[:_MAX_CIRCUITS]


@dataclass(frozen=True, slots=True)
class DialFailure:
    """Why a peer could not be dialled: each address tried and what happened there."""

    peer_id: str
    at: float  # trio clock
    reasons: tuple[tuple[str, str], ...]  # (address, reason)

    @property
    def summary(self) -> str:
        if not self.reasons:
            return "no usable address is known"
        parts = [f"{addr}: {why}" for addr, why in self.reasons[:_MAX_REPORTED]]
        more = len(self.reasons) - _MAX_REPORTED
        return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """An exception, its causes and contexts, and the members of groups, depth first."""
    seen: set[int] = set()
    stack = [exc]
    while stack and len(seen) < 32:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack += list(getattr(current, "exceptions", ()))
        stack += [e for e in (current.__cause__, current.__context__) if e is not None]


def describe_dial_error(exc: BaseException) -> str:
    """A short reason a person can act on, from py-libp2p's nested dial exceptions."""
    texts = []
    for err in _chain(exc):
        if isinstance(err, OSError) and err.errno is not None:
            if err.errno == errno.ECONNREFUSED:
                return "connection refused (no node listens there)"
            if err.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                return "no route to that address"
            if err.errno == errno.ETIMEDOUT:
                return "timed out"
        if isinstance(err, trio.TooSlowError):
            return "timed out"
        texts.append(str(err).lower())
    joined = " ".join(texts)
    if "mismatch" in joined:
        return "another node answers at this address (peer id mismatch)"
    if "refused" in joined:
        return "connection refused (no node listens there)"
    if "handshake" in joined or "security" in joined:
        return "security handshake failed"
    if "timed out" in joined or "timeout" in joined:
        return "timed out"
    if "maximum connections" in joined:
        return "our connection limit is reached"
    return f"failed ({type(exc).__name__})"


def remote_ip(conn: INetConn) -> str | None:
    """The IP a connection's other end uses (what we observe of the peer), if known."""
    muxed: Any = getattr(conn, "muxed_conn", None)
    secured: Any = getattr(muxed, "secured_conn", None)
    get = getattr(secured, "get_remote_address", None)
    if get is None:
        return None
    try:
        remote = get()
    except (OSError, AttributeError):
        return None
    if not remote or not isinstance(remote[0], str):
        return None
    return str(remote[0])


class Dialer:
    """Dials a peer at all its usable addresses; replaces ``swarm.dial_peer``."""

    def __init__(
        self,
        swarm: Any,
        *,
        own_addrs: Callable[[], list[str]],
        local: Callable[[], LocalInterfaces],
        blocked: Callable[[str], bool] = lambda _peer: False,
        stagger: float = 0.25,
    ) -> None:
        self._swarm = swarm
        self._blocked = blocked
        self._own_addrs = own_addrs
        self._local = local
        self._stagger = stagger
        self._ongoing: dict[ID, trio.Event] = {}
        self._failed_addrs: dict[tuple[str, str], float] = {}
        self._failures: dict[str, DialFailure] = {}
        self._logged: dict[str, float] = {}
        self._observed: dict[str, str] = {}
        self.stats = {
            "dials": 0,
            "dial_failures": 0,
            "addresses_tried": 0,
            "own_skipped": 0,
            "relay_dials": 0,
        }
        #: Dials a full ``…/p2p-circuit/p2p/<peer>`` address through the relay transport
        #: (set by :mod:`p2pchat.net.nat` when the relay client runs).
        self.relay_dial: Callable[[str], Awaitable[INetConn]] | None = None

    def install(self) -> None:
        """Route every dial of the swarm through us (py-libp2p's per-address retries, 3
        with backoff from 0.1 s, stay: fewer made node shutdowns hang in tests)."""
        self._swarm.dial_peer = self.dial_peer

    def connected(self, peer_id: str, ip: str | None) -> None:
        """A connection to ``peer_id`` exists (either direction): it is reachable again,
        and ``ip`` (where its connection came from) is a candidate for redialling it."""
        self._failures.pop(peer_id, None)
        if ip is None:
            return
        self._observed[peer_id] = ip
        if len(self._observed) > 4096:
            self._observed.pop(next(iter(self._observed)))

    def failure(self, peer_id: str) -> DialFailure | None:
        """Why the last dial of ``peer_id`` failed (cleared when a dial succeeds)."""
        return self._failures.get(peer_id)

    def failures(self) -> list[DialFailure]:
        return sorted(self._failures.values(), key=lambda f: -f.at)

    def _live(self, peer_id: ID) -> list[INetConn]:
        return [c for c in self._swarm.get_connections(peer_id) if not c.is_closed]

    async def dial_peer(self, peer_id: ID) -> list[INetConn]:
        """py-libp2p's ``dial_peer`` contract: connections to the peer, or SwarmException.

        A graylisted peer (it sent invalid messages) is not dialled at all."""
        if self._blocked(peer_id.to_base58()):
            self.stats["graylisted_refused"] = self.stats.get("graylisted_refused", 0) + 1
            raise SwarmException(f"cannot reach {peer_id}: graylisted for invalid messages")
        live = self._live(peer_id)
        if live:
            return live
        ongoing = self._ongoing.get(peer_id)
        if ongoing is not None:
            await ongoing.wait()
            live = self._live(peer_id)
            if live:
                return live
            failure = self._failures.get(peer_id.to_base58())
            raise SwarmException(failure.summary if failure else f"cannot reach {peer_id}")
        done = self._ongoing[peer_id] = trio.Event()
        try:
            return await self._dial(peer_id)
        finally:
            done.set()
            del self._ongoing[peer_id]

    async def _dial(self, peer_id: ID) -> list[INetConn]:
        pid = peer_id.to_base58()
        self.stats["dials"] += 1
        try:
            known = [str(a) for a in self._swarm.peerstore.addrs(peer_id)]
        except BaseLibp2pError:  # PeerStoreError: nothing known
            known = []
        now = trio.current_time()
        for key in [k for k, t in self._failed_addrs.items() if now - t > _FAILED_TTL]:
            del self._failed_addrs[key]
        observed = self._observed.get(pid)
        order = dial_order(
            known,
            listening=self._own_addrs(),
            local=self._local(),
            observed_ips=[observed] if observed else [],
            recently_failed={a for (p, a) in self._failed_addrs if p == pid},
        )
        self.stats["own_skipped"] += len(set(known) - set(order))
        reasons: dict[str, str] = {}
        winner: list[INetConn] = []
        if self.relay_dial is not None:
            # Relayed addresses last: tried while slow direct ones (a private address
            # behind someone else's NAT times out) are still pending.
            order += relay_circuits(pid, known)
        if order:
            await self._race(peer_id, order, winner, reasons)
        if winner:
            self._failures.pop(pid, None)
            # py-libp2p clears a peer's addresses after a peer-id mismatch; keep the rest.
            mismatched = {a for a, why in reasons.items() if "mismatch" in why}
            keep = [Multiaddr(a) for a in known if a not in mismatched]
            if keep:
                self._swarm.peerstore.add_addrs(peer_id, keep, 3600)
            return winner
        self.stats["dial_failures"] += 1
        if not reasons:
            skipped = ", ".join(known[:4]) or "none"
            reasons = {"(none)": f"no usable address (known: {skipped})"}
        failure = DialFailure(pid, now, tuple(reasons.items()))
        self._failures[pid] = failure
        if len(self._failures) > 1024:
            self._failures.pop(next(iter(self._failures)))
        if now - self._logged.get(pid, -_LOG_EVERY) >= _LOG_EVERY:
            self._logged[pid] = now
            logger.info("cannot reach peer %s: %s", pid, failure.summary)
        raise SwarmException(f"cannot reach {pid}: {failure.summary}")

    async def _race(
        self, peer_id: ID, order: list[str], winner: list[INetConn], reasons: dict[str, str]
    ) -> None:
        pid = peer_id.to_base58()

        async def attempt(addr: str, failed: trio.Event, scope: trio.CancelScope) -> None:
            self.stats["addresses_tried"] += 1
            relayed = "/p2p-circuit" in addr
            try:
                if relayed and self.relay_dial is not None:
                    self.stats["relay_dials"] += 1
                    with trio.fail_after(_RELAY_DIAL_TIMEOUT):
                        conn = await self.relay_dial(addr)
                else:
                    conn = await self._swarm.dial_addr(Multiaddr(addr), peer_id)
            except (SwarmException, BaseLibp2pError, OSError, trio.TooSlowError) as exc:
                reasons[addr] = ("through the relay: " if relayed else "") + describe_dial_error(
                    exc
                )
                self._failed_addrs[(pid, addr)] = trio.current_time()
                logger.debug("dial %s at %s failed: %s", pid, addr, reasons[addr])
                failed.set()
                return
            if winner:  # a slower address connected too: one connection per peer
                with trio.CancelScope(shield=True, deadline=trio.current_time() + _CLOSE_WITHIN):
                    await _close_quietly(conn)
                return
            winner.append(conn)
            self._failed_addrs.pop((pid, addr), None)
            scope.cancel()

        async with trio.open_nursery() as nursery:
            for addr in order:
                failed = trio.Event()
                nursery.start_soon(attempt, addr, failed, nursery.cancel_scope)
                with trio.move_on_after(self._stagger):
                    await failed.wait()
                if winner:
                    break


async def _close_quietly(conn: INetConn) -> None:
    try:
        await conn.close()
    except (BaseLibp2pError, OSError, trio.BrokenResourceError, trio.ClosedResourceError):
        logger.debug("closing a surplus connection failed")

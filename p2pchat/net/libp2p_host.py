"""The :class:`~p2pchat.net.base.Network` over a real py-libp2p 0.8.1 host.

::

    async with open_libp2p_network(device_seed, NetConfig(port=0), jitter=random.Random()) as net:
        net.set_stream_handler("/p2pchat/dm/1", handle)
        stream = await net.open_stream(peer_id, "/p2pchat/dm/1")

The host key *is* the device key (Ed25519 seed from the caller), so the peer id is the
one :func:`p2pchat.net.identity.seed_to_peer_id` computes. Security is Noise only:
py-libp2p's default list also offers plaintext and secio and accepted a plaintext
inbound connection. Muxer: Yamux. One connection per peer (py-libp2p's default of three
adds a ~250 ms "happy eyeballs" wait to every dial).

py-libp2p's service manager, its nurseries and its shutdown order stay inside
:func:`open_libp2p_network`; the caller sees one ``async with``. The host is closed
explicitly before ``host.run()`` exits, which is what keeps py-libp2p from leaking a
socket per outbound connection (see :mod:`p2pchat.net._warnings`).

This module imports py-libp2p (about a second): import it only where a real network
is needed.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.host.exceptions import ConnectionFailure, StreamFailure
from libp2p.network.config import ConnectionConfig
from libp2p.network.exceptions import SwarmException
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo as Libp2pPeerInfo
from libp2p.protocol_muxer.exceptions import MultiselectClientError
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from multiaddr import Multiaddr
from nacl.signing import SigningKey

from p2pchat.errors import (
    ClosedError,
    LocalProtocolError,
    NetworkError,
    P2PChatError,
    PeerUnreachableError,
    ProtocolError,
)
from p2pchat.protocol.counters import reason_of

from ._addrs import advertised
from ._dialer import Dialer, DialFailure
from ._errors import ErrorTable, map_exceptions, unwrap_sole_exception
from ._events import EventBus, EventFeed
from ._framed import FramedByteStream
from ._inbound import InboundGate
from ._notify import ConnectionEvents
from ._penalties import Graylist
from ._startup import Interfaces, bootstrap, check_ports_free, refresh_forever
from ._trim import Trimmer
from .base import (
    FramedStream,
    PeerDiscovered,
    PeerInfo,
    StreamHandler,
)
from .config import NetConfig
from .dht import Libp2pDht, start_dht
from .pubsub import Libp2pPubSub, start_pubsub

if TYPE_CHECKING:
    from .nat import NatServices
    from .relay import RelayDialer

__all__ = ["Libp2pNetwork", "open_libp2p_network", "key_pair_from_seed", "parse_peer_id"]

logger = logging.getLogger(__name__)

#: How long py-libp2p keeps addresses we hand it; refreshed on every connect.
_ADDR_TTL = 3600
_RESET_WITHIN_S = 2.0  # a stream reset is one muxer frame; never wait longer for it

#: Dial and stream-open failures: the peer is not reachable right now.
DIAL_ERRORS: ErrorTable = [
    (MultiselectClientError, NetworkError),  # reached, but it does not speak the protocol
    (SwarmException, PeerUnreachableError),
    (ConnectionFailure, PeerUnreachableError),
    (StreamFailure, PeerUnreachableError),
    (trio.TooSlowError, PeerUnreachableError),
    (OSError, PeerUnreachableError),
    (BaseLibp2pError, NetworkError),
    (trio.BrokenResourceError, NetworkError),
    (trio.ClosedResourceError, NetworkError),
]

#: Errors on an open stream.
STREAM_ERRORS: ErrorTable = [
    (BaseLibp2pError, NetworkError),
    (trio.BrokenResourceError, NetworkError),
    (trio.ClosedResourceError, NetworkError),
    (OSError, NetworkError),
]


def key_pair_from_seed(seed: bytes) -> KeyPair:
    """py-libp2p's key pair for the device key with this 32-byte Ed25519 seed."""
    if len(seed) != 32:
        raise ValueError("an Ed25519 seed has 32 bytes")
    signing_key = SigningKey(seed)
    return KeyPair(Ed25519PrivateKey(signing_key), Ed25519PublicKey(signing_key.verify_key))


def parse_peer_id(peer_id: str) -> ID:
    """``LocalProtocolError`` for a string that is not a peer id (a caller's bug)."""
    try:
        return ID.from_base58(peer_id)
    except ValueError as exc:
        raise LocalProtocolError("not a peer id") from exc


def _dialable(peer_id: str, addrs: Sequence[str]) -> list[Multiaddr]:
    """Addresses without the trailing ``/p2p/<peer_id>`` py-libp2p's ``get_addrs`` adds."""
    suffix = f"/p2p/{peer_id}"
    out = []
    for addr in addrs:
        text = addr[: -len(suffix)] if addr.endswith(suffix) else addr
        try:
            out.append(Multiaddr(text))
        except (ValueError, multiaddr.exceptions.Error) as exc:
            raise LocalProtocolError("not a multiaddr") from exc
    return out


class _Libp2pByteStream:
    """A py-libp2p stream as the :class:`~p2pchat.net._framed.ByteStream` the framer wants."""

    def __init__(self, stream: INetStream) -> None:
        self._stream = stream

    async def receive_some(self, max_bytes: int) -> bytes:
        try:
            with map_exceptions(STREAM_ERRORS, what="stream read"):
                return await self._stream.read(max_bytes)
        except NetworkError as exc:
            if not isinstance(exc.__cause__, StreamEOF):
                raise
            # py-libp2p's Yamux sometimes reports a peer's RST as a clean EOF; its
            # stream still knows, and a reset must not pass for a complete message.
            muxed = getattr(self._stream, "muxed_stream", None)
            if getattr(muxed, "reset_received", False):
                raise NetworkError("stream read failed (reset by peer)") from exc
            return b""

    async def send_all(self, data: bytes) -> None:
        with map_exceptions(STREAM_ERRORS, what="stream write"):
            await self._stream.write(data)

    async def close_write(self) -> None:
        with map_exceptions(STREAM_ERRORS, what="stream close"):
            await self._stream.close()

    async def reset(self) -> None:
        # Shielded (and bounded): callers reset in `except BaseException` blocks, where a
        # cancellation would otherwise abort the reset and leave the stream half open.
        with (
            trio.CancelScope(shield=True),
            trio.move_on_after(_RESET_WITHIN_S),
            map_exceptions(STREAM_ERRORS, what="stream reset"),
        ):
            await self._stream.reset()


def _framed(stream: INetStream, protocol: str, config: NetConfig) -> FramedByteStream:
    remote = stream.muxed_conn.peer_id.to_base58()
    return FramedByteStream(
        _Libp2pByteStream(stream),
        remote_peer=remote,
        protocol=protocol,
        frame_timeout=config.stream_frame_timeout,
        idle_timeout=config.stream_idle_timeout,
    )


class Libp2pNetwork:
    """Satisfies :class:`p2pchat.net.base.Network`; made by :func:`open_libp2p_network`."""

    def __init__(
        self,
        host: IHost,
        config: NetConfig,
        *,
        dht: Libp2pDht,
        pubsub: Libp2pPubSub,
        bus: EventBus,
        nursery: trio.Nursery,
        dialer: Dialer,
        graylist: Graylist,
        inbound: InboundGate | None = None,
        jitter: random.Random | None = None,
    ) -> None:
        self._host = host
        self._graylist = graylist
        self._dialer = dialer
        self._inbound = inbound
        self._nursery = nursery
        self._jitter = jitter or random.Random()
        self._discovering = False
        self._config = config
        self._dht = dht
        self._pubsub = pubsub
        self._bus = bus
        self._closed = False
        #: Set when ``NetConfig.relay_client`` is on (see :mod:`p2pchat.net.relay`).
        self.relay: RelayDialer | None = None
        #: AutoNAT, relays, hole punching (see :mod:`p2pchat.net.nat`).
        self.nat: NatServices | None = None
        #: Our pass over idle connections above the high watermark (:mod:`._trim`).
        self.trimmer: Trimmer | None = None

    def __repr__(self) -> str:
        return f"<Libp2pNetwork {self.peer_id}>"

    @property
    def peer_id(self) -> str:
        return self._host.get_id().to_base58()

    @property
    def listen_addrs(self) -> list[str]:
        """The addresses we advertise (with ``/p2p/<peer id>``): what identify, the DHT
        and our records tell other hosts. A wildcard listener is shown as the interfaces'
        addresses; loopback only when it is all we listen on (see :mod:`._addrs`)."""
        return [str(addr) for addr in self._host.get_addrs()]

    def dial_failure(self, peer_id: str) -> DialFailure | None:
        """Why the last dial of ``peer_id`` failed, per address (None once it succeeds)."""
        return self._dialer.failure(peer_id)

    def statistics(self) -> dict[str, Any]:
        """Dial counters and the peers we last failed to reach, with their reasons."""
        return {
            **self._dialer.stats,
            **(self.nat.statistics(self._host) if self.nat is not None else {}),
            **(self._inbound.stats if self._inbound is not None else {}),
            **self._graylist.statistics(trio.current_time()),
            "connections": len(self._host.get_network().get_connections()),
            "connections_trimmed": self.trimmer.trimmed if self.trimmer is not None else 0,
            "unreachable": [
                {"peer_id": f.peer_id, "reason": f.summary} for f in self._dialer.failures()[:16]
            ],
        }

    @property
    def dht(self) -> Libp2pDht:
        return self._dht

    @property
    def pubsub(self) -> Libp2pPubSub:
        return self._pubsub

    @property
    def host(self) -> IHost:
        """The py-libp2p host, for the relay and for diagnostics; not for protocol code."""
        return self._host

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the network was closed")

    async def connect(self, peer_id: str, addrs: Sequence[str]) -> None:
        """Dial ``peer_id`` at ``addrs`` (replacing any addresses known for it).

        py-libp2p dials only one TCP address per peer and blocks a peer for 60 s after a
        failed dial, even at a correct address: an explicit connect with fresh
        addresses therefore clears both first.
        """
        self._check_open()
        pid = parse_peer_id(peer_id)
        dial = _dialable(peer_id, addrs)
        if not dial:
            raise PeerUnreachableError("no address to dial")
        peerstore = self._host.get_peerstore()
        peerstore.clear_addrs(pid)
        _unblock(self._host, pid)
        with _reasoned(), trio.fail_after(self._config.dial_timeout):
            await self._host.connect(Libp2pPeerInfo(pid, dial))

    async def disconnect(self, peer_id: str) -> None:
        self._check_open()
        with map_exceptions(DIAL_ERRORS, what="disconnect"):
            await self._host.disconnect(parse_peer_id(peer_id))

    def connected_peers(self) -> list[str]:
        return sorted(peer.to_base58() for peer in self._host.get_connected_peers())

    def connection_paths(self) -> dict[str, str]:
        from .nat import connection_paths

        return connection_paths(self._host)

    def penalize(self, peer_id: str, reason: str) -> None:
        """``peer_id`` sent something invalid (``reason``: its slug); a repeated offender
        is disconnected and not dialled for a while (see :mod:`p2pchat.net._penalties`)."""
        if self._graylist.penalize(peer_id, reason, trio.current_time()):
            logger.info("peer %s graylisted (invalid messages: %s)", peer_id, reason)
            if not self._closed:
                self._nursery.start_soon(self._drop, peer_id)

    async def _drop(self, peer_id: str) -> None:
        with contextlib.suppress(NetworkError):
            await self.disconnect(peer_id)

    def protect(self, peer_id: str, tag: str) -> None:
        """Keep connections to ``peer_id`` when trimming above the high watermark (py-libp2p's
        connection pruner trims idle, unprotected connections down to the low watermark)."""
        self._swarm.protect(parse_peer_id(peer_id), tag)

    def unprotect(self, peer_id: str, tag: str) -> bool:
        """Drop one reason to keep ``peer_id``; True while other tags still protect it."""
        return bool(self._swarm.unprotect(parse_peer_id(peer_id), tag))

    def is_protected(self, peer_id: str, tag: str = "") -> bool:
        return bool(self._swarm.is_protected(parse_peer_id(peer_id), tag))

    @property
    def _swarm(self) -> Any:
        return self._host.get_network()

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None:
        """Route inbound streams of ``protocol`` to ``handler`` (see :data:`StreamHandler`).

        A handler that raises something other than a p2pchat error has a bug. Left
        alone, the exception would end py-libp2p's swarm task and take every
        connection down without telling anyone. Instead the stream is reset and the
        exception is re-raised in this network's own nursery, so it leaves
        ``async with open_libp2p_network(...)``, as it leaves the memory network.
        """

        async def on_stream(stream: INetStream) -> None:
            framed = _framed(stream, protocol, self._config)
            if self._graylist.blocked(framed.remote_peer, trio.current_time()):
                with contextlib.suppress(NetworkError):
                    await framed.reset()
                return
            try:
                await _run_handler(handler, framed, self.penalize)
            except Exception as bug:  # noqa: BLE001 - moved to our nursery, not swallowed
                with trio.CancelScope(shield=True):
                    try:
                        await framed.reset()
                    except NetworkError:
                        logger.debug("resetting the stream of a failed handler failed")
                self._nursery.start_soon(_reraise, bug)

        self._host.set_stream_handler(TProtocol(protocol), on_stream)

    async def open_stream(self, peer_id: str, protocol: str) -> FramedStream:
        """Open a stream, dialing first if needed (with addresses already known)."""
        self._check_open()
        pid = parse_peer_id(peer_id)
        with _reasoned("stream open"), trio.fail_after(self._config.dial_timeout):
            stream = await self._host.new_stream(pid, [TProtocol(protocol)])
        return _framed(stream, protocol, self._config)

    async def start_discovery(self) -> None:
        """Connect to the bootstrap peers, start the DHT refresh and (opt-in) mDNS.

        Separate from opening so that a node registers its protocol handlers first: a
        bootstrap peer that sees us connect may open a stream to us at once, and a
        protocol without a handler yet is refused. Idempotent.
        """
        if self._discovering:
            return
        self._discovering = True
        await bootstrap(self, self._config, jitter=self._jitter)
        self._nursery.start_soon(refresh_forever, self._dht, self._config.dht_refresh_interval)
        if self._config.mdns:
            await _start_mdns(self._nursery, self, self._config, self._bus)

    def events(self) -> EventFeed:
        return self._bus.feed()

    def shut(self) -> None:
        self._closed = True
        self._bus.close()


@contextmanager
def _reasoned(what: str = "dial") -> Iterator[None]:
    """:data:`DIAL_ERRORS` mapping, keeping our dialer's per-address reasons in the message
    (a person reading "cannot reach X: addr: connection refused" knows what to fix)."""
    try:
        with map_exceptions(DIAL_ERRORS, what=what):
            yield
    except PeerUnreachableError as exc:
        cause = exc.__cause__
        if isinstance(cause, SwarmException) and str(cause).startswith("cannot reach "):
            raise PeerUnreachableError(str(cause)) from cause
        raise


def _unblock(host: IHost, peer: ID) -> None:
    network: Any = host.get_network()
    unblock = getattr(network, "unblock_peer", None)
    if unblock is not None:
        unblock(peer)


async def _reraise(bug: Exception) -> None:
    raise bug


async def _run_handler(
    handler: StreamHandler, stream: FramedStream, penalize: Callable[[str, str], None]
) -> None:
    """Close the stream when the handler returns (py-libp2p does not), reset on our errors;
    a peer that broke the protocol (``ProtocolError``) is penalised.

    Other exceptions are bugs in the handler: they propagate.
    """
    try:
        await handler(stream)
    except P2PChatError as exc:
        logger.debug("stream handler for %s failed: %s", stream.protocol, type(exc).__name__)
        if isinstance(exc, ProtocolError):
            penalize(stream.remote_peer, reason_of(exc))
        try:
            await stream.reset()
        except NetworkError:
            logger.debug("resetting a failed stream failed (peer went away)")
        return
    try:
        await stream.close()
    except NetworkError:
        logger.debug("closing a handled stream failed (peer went away)")


@asynccontextmanager
async def open_libp2p_network(
    seed: bytes, config: NetConfig, *, jitter: random.Random, discover: bool = True
) -> AsyncIterator[Libp2pNetwork]:
    """Start a host (listening, DHT, gossipsub, optional mDNS and relay); stop it on exit.

    Returns once listening and bootstrapped (bootstrap peers that cannot be reached
    are logged and skipped: a node must start offline). ``jitter`` drives the retry
    backoff of DHT lookups.
    """
    check_ports_free(config)
    key_pair = key_pair_from_seed(seed)
    noise = NoiseTransport(key_pair, noise_privkey=new_x25519_key_pair().private_key)
    listen = [Multiaddr(addr) for addr in config.listen_addrs]
    interfaces = Interfaces()
    host = new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        listen_addrs=listen,
        connection_config=ConnectionConfig(
            max_connections_per_peer=1,
            dial_timeout=config.dial_timeout,
            min_connections=config.min_connections,
            low_watermark=config.low_watermark,
            high_watermark=config.high_watermark,
            max_connections=config.max_connections,
            grace_period=config.trim_grace_period,
        ),
        addrs_factory=lambda candidates: [
            Multiaddr(a) for a in advertised((str(c) for c in candidates), interfaces.get())
        ],
    )
    graylist = Graylist()
    dialer = Dialer(
        host.get_network(),
        blocked=lambda peer: graylist.blocked(peer, trio.current_time()),
        own_addrs=lambda: (
            [str(a) for a in host.get_transport_addrs()] + [str(a) for a in host.get_addrs()]
        ),
        local=interfaces.get,
    )
    dialer.install()
    inbound = InboundGate(
        host.get_network(),
        per_ip=config.max_inbound_per_ip,
        handshake_timeout=config.dial_timeout,
    )
    inbound.install()
    trimmer = Trimmer(
        host.get_network(),
        low=config.low_watermark,
        high=config.high_watermark,
        grace_period=config.trim_grace_period,
    )
    trimmer.install()
    bus = EventBus(buffer=config.event_buffer)
    host.get_network().register_notifee(ConnectionEvents(host.get_network(), bus, dialer))
    # Our own tasks (refresh, mDNS, re-raised handler bugs) live in a nursery *inside*
    # the py-libp2p services: cancelling it must not cancel their shutdown, or the
    # Cancelled raised there would replace (and so swallow) the body's exception.
    with unwrap_sole_exception():
        async with (
            _running(host, listen),
            start_dht(
                host, config, jitter=jitter, unreachable=lambda p: dialer.failure(p) is not None
            ) as dht,
            start_pubsub(host, config.gossip) as pubsub,
            AsyncExitStack() as stack,
        ):
            from .nat import start_nat

            # Entered before our nursery opens: trio scopes must nest strictly.
            nat = await stack.enter_async_context(
                start_nat(
                    host,
                    config,
                    set_relay_dial=lambda relay: setattr(dialer, "relay_dial", relay.dial_circuit),
                    emit=bus.emit,
                )
            )
            async with trio.open_nursery() as nursery:
                network = Libp2pNetwork(
                    host,
                    config,
                    dht=dht,
                    pubsub=pubsub,
                    bus=bus,
                    nursery=nursery,
                    dialer=dialer,
                    graylist=graylist,
                    inbound=inbound,
                    jitter=jitter,
                )
                network.trimmer = trimmer
                network.relay = nat.relay
                network.nat = nat
                if discover:
                    await network.start_discovery()
                try:
                    yield network
                finally:
                    network.shut()
                    nursery.cancel_scope.cancel()


@asynccontextmanager
async def _running(host: IHost, listen: list[Multiaddr]) -> AsyncIterator[None]:
    """``host.run()``, closing the host explicitly before it exits (or it leaks sockets)."""
    async with host.run(listen_addrs=listen):
        try:
            yield
        finally:
            with trio.CancelScope(shield=True):
                await host.close()


async def _start_mdns(
    nursery: trio.Nursery, network: Libp2pNetwork, config: NetConfig, bus: EventBus
) -> None:
    from .mdns import run_mdns

    def deliver(peer: PeerInfo) -> None:
        try:  # announcements come from anyone on the LAN
            pid = parse_peer_id(peer.peer_id)
            addrs = _dialable(peer.peer_id, peer.addrs)
        except LocalProtocolError:
            logger.debug("ignoring a malformed mDNS announcement")
            return
        network.host.get_peerstore().add_addrs(pid, addrs, _ADDR_TTL)
        bus.emit(PeerDiscovered(peer))

    port = int(network.listen_addrs[0].split("/tcp/")[1].split("/")[0])
    await nursery.start(
        partial(
            run_mdns,
            peer_id=network.peer_id,
            listen_addrs=network.listen_addrs,
            listen_hosts=config.listen_hosts,
            port=port,
            deliver=deliver,
            name=config.display_name,
        )
    )

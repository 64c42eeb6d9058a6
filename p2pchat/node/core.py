"""The embedding API: ``async with Node(config, identity) as node``.

Entering returns once the node listens; background work (publishing records, the
outbox, reacting to peers) runs in the node's own nursery until the block exits.
A crash in background work is a bug, and it surfaces at the ``async with``; bad input
from the network never crashes the node (it is rejected and counted).

A node is opened once; closing is idempotent; any call on a closed node raises
:class:`~p2pchat.errors.ClosedError`.

The node knows nothing of its local RPC API: whoever runs a node with one (the CLI's
``node run``, :func:`p2pchat.aio.run_node_in_thread`, an embedding app) serves it around
the node with :func:`p2pchat.api.serve_node`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import nacl.utils
import trio

from p2pchat_crypto.identity import Device

from ..blobs.mailbox import MailboxBlobs
from ..blobs.service import Blobs
from ..config import NodeConfig
from ..devices import DeviceService
from ..devices.history import HistorySync
from ..dm.device_notice import DeviceListNotice
from ..dm.mailbox import Mailbox, MailboxKeys
from ..dm.own_sync import OwnSync
from ..dm.service import DirectMessages
from ..errors import (
    ClosedError,
    ConfigError,
    LocalProtocolError,
    NetworkError,
)
from ..events import (
    EventBus,
    EventStream,
    PeerConnected,
    PeerDisconnected,
    PeerNearby,
    ReachabilityChanged,
)
from ..groups.service import Groups
from ..identity.directory import Directory
from ..identity.keystore import UnlockedIdentity
from ..identity.local_keys import LocalKeys
from ..identity.peerid import peer_id_from_ed25519
from ..net import base as netbase
from ..net.base import Network
from ..protocol.group_engine import EngineConfig
from ..protocol.limits import backoff_ms
from ..protocol.profile import PROFILE_CONTENT_TYPE
from ..storage.base import Store
from ..storage.records import (
    ContactState,
    Peer,
    PeerSource,
)
from .contacts import ContactsApi, parse_account
from .devices import DevicesApi
from .dm_changes import DmChangesApi
from .dms import DmsApi
from .files import FilesApi
from .groups import GroupsApi
from .health import HomeWatch, watch_home
from .profiles import Profile, ProfilesApi

__all__ = ["Node", "NetworkOpener", "wall_clock_ms", "parse_account"]

logger = logging.getLogger(__name__)

#: Opens the network for a device: the libp2p host by default, a memory node in tests.
NetworkOpener = Callable[[Device], AbstractAsyncContextManager[Network]]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _libp2p_opener(config: NodeConfig) -> NetworkOpener:
    def open_network(device: Device) -> AbstractAsyncContextManager[Network]:
        from ..net.libp2p_host import open_libp2p_network  # ~1 s import: only when needed

        # Discovery starts once the node has registered its handlers (see Node._start).
        net = dataclasses.replace(config.net, display_name=config.display_name)
        return open_libp2p_network(
            device.signing_seed(), net, jitter=random.Random(), discover=False
        )

    return open_network


class Node(DmsApi, ProfilesApi, ContactsApi, FilesApi, GroupsApi, DevicesApi, DmChangesApi):
    """A p2pchat node. See the module docstring and README "Embedding"."""

    def __init__(
        self,
        config: NodeConfig,
        identity: UnlockedIdentity,
        *,
        network: NetworkOpener | None = None,
        store: Store | None = None,
        clock: Callable[[], int] = wall_clock_ms,
        rng: Callable[[int], bytes] = nacl.utils.random,
        seed: int | None = None,
    ) -> None:
        """``network`` and ``store`` are for tests and embedding: a store passed in is
        used as is and not closed by the node (the caller owns it)."""
        self._config = config
        self._identity = identity
        self._open_network = network or _libp2p_opener(config)
        self._given_store = store
        self._clock = clock
        self._rng = rng
        self._jitter = random.Random(seed)  # timing jitter only, never keys
        self._state = "new"
        self._stack = contextlib.AsyncExitStack()
        self._events = EventBus(capacity=config.event_buffer)
        self._nearby: dict[str, netbase.PeerInfo] = {}
        self._started_at = 0
        self._store: Store | None = None
        self._network: Network | None = None
        self._dm: DirectMessages | None = None
        self._profile: Profile | None = None
        self._profiles: dict[bytes, Profile] = {}
        self._blobs: Blobs | None = None
        self._mailbox_blobs: MailboxBlobs | None = None
        self._directory: Directory | None = None
        self._devices: DeviceService | None = None
        self._own_sync: OwnSync | None = None
        self._history: HistorySync | None = None
        self._nursery: trio.Nursery | None = None
        self._published = trio.Event()
        self._mail_due = trio.Event()

    def __repr__(self) -> str:
        return f"<Node {self.peer_id} {self._state}>"

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Node:
        if self._state != "new":
            raise LocalProtocolError("a Node can be opened only once; create a new one")
        self._state = "starting"
        try:
            await self._start()
        except BaseException:
            self._state = "closed"
            self._events.close()
            await self._stack.aclose()
            raise
        self._state = "running"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop background work, close the network and (if the node opened it) the store."""
        if self._state in ("closed", "new"):
            self._state = "closed"
            return
        self._state = "closed"
        self._events.close()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        # No shield here: the exit stack holds a nursery opened before this call, and a
        # nursery must not be exited from inside a cancel scope opened after it.
        await self._stack.aclose()

    async def _start(self) -> None:
        config, identity = self._config, self._identity
        store_check: Callable[[], None] | None = None
        if self._given_store is not None:
            self._store = self._given_store
        else:
            from ..storage.sqlite import SqliteStore

            config.home.mkdir(parents=True, exist_ok=True, mode=0o700)
            store = await SqliteStore.open(
                config.home / "store.sqlite3", seal_key=identity.local_key
            )
            self._store = await self._stack.enter_async_context(store)
            store_check = store.check_file
        # A home that exists is watched (with a given store it may not: tests, embedding).
        home = HomeWatch(config.home) if config.home.is_dir() else None
        self._network = await self._stack.enter_async_context(self._open_network(identity.device))
        keys = LocalKeys(
            account=identity.account,
            device=identity.device,
            local_key=identity.local_key,
            rng=self._rng,
            prekey_lifetime_ms=config.delivery.prekey_lifetime_ms,
        )
        async with self._store.transaction() as tx:
            await keys.load(tx)
            if keys.needs_rotation(self._clock()):
                keys.rotate(self._clock())
                await keys.save_prekeys(tx)
        self._keys = keys
        self._devices = DeviceService(
            identity=identity,
            store=self._store,
            network=self._network,
            events=self._events,
            clock=self._clock,
            rng=self._rng,
            collect_sync=self._collect_sync,
        )
        self._directory = Directory(
            network=self._network,
            store=self._store,
            clock=self._clock,
            account=identity.account,
            device=identity.device,
            local_keys=keys,
            record_lifetime_ms=config.delivery.record_lifetime_ms,
            device_list=self._devices.device_list,
        )
        await self._devices.start(self._directory)
        await self._load_profiles(self._store)
        self._dm = DirectMessages(
            identity=identity,
            store=self._store,
            network=self._network,
            directory=self._directory,
            local_keys=keys,
            events=self._events,
            config=config.delivery,
            clock=self._clock,
            rng=self._rng,
            jitter=self._jitter,
            display_name=self.display_name,
        )
        self._dm.control_handlers[PROFILE_CONTENT_TYPE] = self._on_profile
        await self._dm.start()
        self._wire_fanout(identity.account.account_key)
        self._start_history(identity)
        self._own_sync = OwnSync(
            dm=self._dm, store=self._store, events=self._events, clock=self._clock
        )
        notice = DeviceListNotice(
            dm=self._dm, directory=self._directory, store=self._store, clock=self._clock
        )
        self._devices.on_list_changed = notice.announce
        self._mailbox = Mailbox(
            network=self._network,
            store=self._store,
            config=config.mailbox,
            keys=MailboxKeys(identity.local_key),
            directory=self._directory,
            dm=self._dm,
            clock=self._clock,
            rng=self._rng,
        )
        self._blobs = Blobs(
            root=config.home / "blobs",
            seal_key=identity.local_key,
            network=self._network,
            events=self._events,
            config=config.blobs,
            clock=self._clock,
            rng=self._rng,
            peer_id=peer_id_from_ed25519(identity.device.public_key),
        )
        self._stack.callback(self._blobs.close)
        self._mailbox_blobs = MailboxBlobs(
            blobs=self._blobs, accept=config.mailbox.enabled, clock=self._clock
        )
        self._mailbox.hold_blob = self._mailbox_blobs.hold
        self._mailbox.before_deposit = self._deposit_files
        self._started_at = self._clock()
        self._nursery = await self._stack.enter_async_context(trio.open_nursery())
        await self._nursery.start(self._attachments_loop)
        self._dm.on_received = self._note_dm
        self._nursery.start_soon(self._blobs.run_gc)
        if home is not None:
            self._nursery.start_soon(watch_home, home, config.home_check_ms / 1000, store_check)
        self._nursery.start_soon(self._dm.run_outbox)
        self._nursery.start_soon(self._watch_network)
        self._nursery.start_soon(self._mailbox_loop)
        self._groups = Groups(
            identity=identity,
            store=self._store,
            network=self._network,
            dm=self._dm,
            local_keys=keys,
            events=self._events,
            clock=self._clock,
            rng=self._rng,
            jitter=self._jitter,
            peer_rate=config.delivery.peer_rate,
            peer_burst=config.delivery.peer_burst,
            record_lifetime_ms=config.delivery.record_lifetime_ms,
            engine_config=EngineConfig(
                author_rate=config.delivery.author_rate,
                author_burst=config.delivery.author_burst,
            ),
        )
        await self._nursery.start(self._groups.run)
        self._nursery.start_soon(self._adopt_groups)  # a new device's synced groups
        # Every protocol handler is registered: only now may peers find us.
        await self._network.start_discovery()
        self._nursery.start_soon(self._history_at_link)  # linked with --history
        self._nursery.start_soon(self._publish_loop)
        self._nursery.start_soon(self._devices_loop)

    def _check(self) -> None:
        if self._state != "running":
            raise ClosedError(f"the node is {self._state}")

    @property
    def _s(self) -> Store:
        self._check()
        assert self._store is not None
        return self._store

    @property
    def _net(self) -> Network:
        self._check()
        assert self._network is not None
        return self._network

    @property
    def _dms(self) -> DirectMessages:
        self._check()
        assert self._dm is not None
        return self._dm

    # -- background -----------------------------------------------------------------------

    async def _publish_loop(self) -> None:
        """Publish our records now, then before they expire; rotate prekeys on time.

        A failed publish (no DHT peer yet, say) is retried after 2 s, doubling up to a
        third of the record lifetime.
        """
        assert self._directory is not None
        assert self._store is not None
        lifetime = self._config.delivery.record_lifetime_ms
        failures = 0
        while True:
            now = self._clock()
            if self._keys.needs_rotation(now):
                self._keys.rotate(now)
                async with self._store.transaction() as tx:
                    await self._keys.save_prekeys(tx)
            try:
                await self._devices_before_publish()
                await self._directory.publish(mailboxes=await self._mailbox_infos())
                self._published.set()
                failures, delay_ms = 0, lifetime // 3
            except NetworkError as exc:
                failures += 1
                logger.info("publishing records failed (will retry): %s", exc)
                delay_ms = backoff_ms(failures, initial=2_000, maximum=lifetime // 3, jitter=1.0)
            await trio.sleep(delay_ms / 1000 * self._jitter.uniform(0.9, 1.1))

    async def _devices_before_publish(self) -> None:
        """Merge the account's device list from the DHT first (devices.md section 2)."""
        assert self._devices is not None
        await self._devices.before_publish()

    async def _mailbox_loop(self) -> None:
        """Collect our mail now and every minute (or when a mailbox connects); tell accepted
        contacts our mailbox keys; expire what we hold for others."""
        assert self._store is not None
        for contact in await self._store.list_contacts(state=ContactState.ACCEPTED):
            await self._mailbox.announce_to(contact.account)
        while True:
            self._mail_due = trio.Event()
            if self._config.mailbox.use:
                await self._mailbox.collect()
            if self._config.mailbox.enabled:
                await self._mailbox.expire()
            with trio.move_on_after(60):
                await self._mail_due.wait()

    async def collect_mail(self) -> int:
        """Fetch our mail from our mailboxes now; returns how many items were collected."""
        self._check()
        return await self._mailbox.collect()

    async def _mailbox_infos(self) -> list[netbase.PeerInfo]:
        return [netbase.PeerInfo(peer_id=p, addrs=a) for p, a in self._config.mailbox.use_peers]

    async def _watch_network(self) -> None:
        assert self._network is not None
        assert self._store is not None
        assert self._dm is not None
        async for event in self._network.events():
            if isinstance(event, netbase.PeerConnected):
                self._dm.peer_reachable(event.peer_id)
                if self._groups.peer_connected(event.peer_id):
                    self._network.protect(event.peer_id, "group")
                if any(event.peer_id == p for p, _ in self._config.mailbox.use_peers):
                    self._network.protect(event.peer_id, "mailbox")
                    self._mail_due.set()
                self._events.publish(PeerConnected(peer_id=event.peer_id))
            elif isinstance(event, netbase.PeerDisconnected):
                self._events.publish(PeerDisconnected(peer_id=event.peer_id))
            elif isinstance(event, netbase.ReachabilityChanged):
                self._events.publish(
                    ReachabilityChanged(
                        reachability=event.reachability, relayed_addrs=event.relayed_addrs
                    )
                )
            elif isinstance(event, netbase.PeerDiscovered):
                info = event.peer
                if info.peer_id == self.peer_id:
                    continue
                self._nearby[info.peer_id] = info
                await self._store.put_peer(
                    Peer(
                        peer_id=info.peer_id,
                        addrs=tuple(info.addrs),
                        last_seen=self._clock(),
                        display_name=info.name,
                        source=PeerSource.MDNS,
                    )
                )
                self._dm.peer_reachable(info.peer_id)
                self._events.publish(
                    PeerNearby(peer_id=info.peer_id, addrs=tuple(info.addrs), name=info.name)
                )

    # -- identity -------------------------------------------------------------------------

    @property
    def config(self) -> NodeConfig:
        return self._config

    @property
    def account_key(self) -> bytes:
        return self._identity.account.account_key

    @property
    def fingerprint(self) -> str:
        return self._identity.account.fingerprint

    @property
    def device_key(self) -> bytes:
        return self._identity.device.public_key

    @property
    def peer_id(self) -> str:
        return peer_id_from_ed25519(self._identity.device.public_key)

    @property
    def listen_addrs(self) -> list[str]:
        return list(self._net.listen_addrs)

    # -- peers ----------------------------------------------------------------------------

    async def connect(self, address: str) -> str:
        """Dial a peer by full multiaddr (``.../p2p/<peer id>``); returns its peer id."""
        peer_id = address.rsplit("/p2p/", 1)[-1] if "/p2p/" in address else ""
        if not peer_id:
            raise ConfigError("a peer address must end in /p2p/<peer id>")
        await self._net.connect(peer_id, [address])
        await self._s.put_peer(
            Peer(
                peer_id=peer_id,
                addrs=(address,),
                last_seen=self._clock(),
                source=PeerSource.MANUAL,
            )
        )
        return peer_id

    async def peers(self) -> dict[str, list[dict[str, Any]]]:
        """Connected peers and peers seen nearby (mDNS)."""
        connected = self._net.connected_peers()
        paths = self._net.connection_paths()
        return {
            "connected": [
                {"peer_id": p, "path": paths.get(p, "direct")} for p in sorted(connected)
            ],
            "nearby": [
                {"peer_id": info.peer_id, "addrs": list(info.addrs), "name": info.name}
                for info in sorted(self._nearby.values(), key=lambda i: i.peer_id)
            ],
        }

    def _spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(fn, *args)

    # -- events and statistics ------------------------------------------------------------

    def events(self) -> EventStream:
        """``async with node.events() as stream: async for event in stream`` (see events.py).

        May be entered before the node starts (``async with node.events() as s, node:``):
        then nothing the start itself delivers is missed (mail fetched from a mailbox,
        messages from peers that connect at once). The stream buffers until read.
        """
        if self._state not in ("new", "running"):
            raise ClosedError(f"the node is {self._state}")
        return self._events.stream()

    async def statistics(self) -> dict[str, Any]:
        store_stats = await self._s.statistics()
        return {
            "peer_id": self.peer_id,
            "uptime_ms": self._clock() - self._started_at,
            "connected_peers": len(self._net.connected_peers()),
            "nearby_peers": len(self._nearby),
            "network": self._net.statistics(),
            "dm": dict(self._dms.stats),
            "mailbox": dict(self._mailbox.stats),
            "groups": self._groups.statistics(),
            "files": self._files_statistics(),
            "events_published": self._events.published,
            "event_streams": self._events.stream_count,
            "store": dataclasses.asdict(store_stats),
            "records_published_at": self._directory.published_at if self._directory else None,
        }

    async def wait_published(self) -> None:
        """Wait until our DHT records were published once (for tests and scripts)."""
        self._check()
        await self._published.wait()

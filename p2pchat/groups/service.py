"""Interest groups on a node: the service behind ``node.create_group``, ``post``, ...

The replicated state is the sans-IO :class:`~p2pchat.protocol.group_engine.GroupEngine`
(one per group; its rules are ``protocol-spec/groups.md``). This service keeps the raw
events in the store (an engine is rebuilt from them at start), moves them with
:class:`~p2pchat.groups.gossip.GroupTransport`, runs the engine's effects, and turns what
changed into node events.

Private groups: content travels in ``sealed`` events encrypted with sender keys
(``p2pchat_crypto.group``). A sender key is handed to each member device inside the
pairwise E2EE session, as hidden DM content of type ``p2pchat/group-key``; after a
removal or a ban the engine asks for a new epoch, and the new keys go only to the
members that remain, so a removed member cannot read anything sent after it.
Our sending state is stored (sealed) before any message encrypted with it leaves.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

import trio
from nacl.signing import SigningKey

from p2pchat_crypto.group import GroupKeyring, InboundGroupSession
from p2pchat_crypto.sealed import Rng

from ..dm.service import DirectMessages
from ..errors import (
    ConfigError,
    LocalProtocolError,
    NetworkError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    WireError,
)
from ..events import (
    EventBus,
)
from ..identity.keystore import UnlockedIdentity
from ..identity.local_keys import LocalKeys
from ..identity.peerid import peer_id_from_ed25519
from ..net.base import Network
from ..protocol.group_engine import EngineConfig, GroupEngine
from ..protocol.group_events import (
    GroupDescriptor,
    InnerEvent,
    MemberJoin,
    MemberLeave,
    Rules,
)
from ..protocol.group_invite import InviteToken, new_invite
from ..protocol.group_log import GroupError
from ..storage.base import Store
from ..storage.records import GroupInfo, GroupStatus
from . import effects
from .discovery import GroupDiscovery
from .effects import with_status
from .gossip import GroupTransport
from .posting import GroupPosting
from .sender_keys import _KEYRING_KIND, _PLAIN_KIND, _PLAIN_META, GROUP_KEY_CONTENT_TYPE

__all__ = ["GROUP_KEY_CONTENT_TYPE", "Groups"]

logger = logging.getLogger(__name__)

#: Store meta key prefix marking a group we left but could not yet tell (+ its id in hex).
_DEPARTING_META = "group-departing:"
_SYNC_FANOUT = 3
#: Rounds of catching up with the inviter before a join by invite gives up.
_JOIN_ATTEMPTS = 5
#: Members tried, one sync each, to hand over our leave before we forget a group.
_HAND_OVER_TRIES = 8


class Groups(GroupPosting, GroupDiscovery):
    """Every group this node is in (see the module docstring)."""

    def __init__(
        self,
        *,
        identity: UnlockedIdentity,
        store: Store,
        network: Network,
        dm: DirectMessages,
        local_keys: LocalKeys,
        events: EventBus,
        clock: Callable[[], int],
        rng: Rng,
        jitter: random.Random,
        peer_rate: float,
        peer_burst: int,
        record_lifetime_ms: int,
        engine_config: EngineConfig | None = None,
    ) -> None:
        self._identity = identity
        self._device = identity.device
        self._account = identity.account.account_key
        self._store = store
        self._network = network
        self._dm = dm
        self._keys = local_keys
        self._events = events
        self._clock = clock
        self._rng = rng
        self._jitter = jitter
        self._record_lifetime = record_lifetime_ms
        self._engine_config = engine_config or EngineConfig()
        self._engines: dict[bytes, GroupEngine] = {}
        #: Groups we left or were removed from: readable history, nothing more (we do not
        #: write, gossip or serve their sync).
        self._archived: dict[bytes, GroupEngine] = {}
        #: Groups we left whose leave event no member has confirmed yet (by a completed
        #: sync): we keep answering their sync and retry the hand-over until one works.
        self._departing: set[bytes] = set()
        #: Groups whose leaving is being finished now (by ``leave`` or the sync loop).
        self._finishing: set[bytes] = set()
        self._keyrings: dict[bytes, GroupKeyring] = {}
        self._undecrypted: dict[bytes, set[bytes]] = {}
        #: Sender keys that arrived before their device was known as a member's.
        self._held_keys: dict[bytes, list[tuple[bytes, InboundGroupSession]]] = {}
        self._lock = trio.Lock()
        self.transport = GroupTransport(
            network=network,
            signing_key=SigningKey(identity.device.signing_seed()),
            clock=clock,
            engine_of=self._engines.get,
            on_result=self._on_result,
            read_events=self._store.group_event_data,
            peer_rate=peer_rate,
            peer_burst=peer_burst,
        )
        dm.control_handlers[GROUP_KEY_CONTENT_TYPE] = self._on_group_key_from

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load every active group, then gossip, sync and republish until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.transport.run)
            for info in await self._store.list_groups():
                departing = await self._store.get_meta(_DEPARTING_META + info.group_id.hex())
                if departing is not None:
                    self._departing.add(info.group_id)
                await self._load(
                    info, active=info.status is GroupStatus.ACTIVE or departing is not None
                )
            task_status.started()
            nursery.start_soon(self._sync_loop)
            nursery.start_soon(self._publish_loop)

    async def _load(self, info: GroupInfo, *, active: bool) -> None:
        engine = await effects.load_engine(
            self._store,
            info.group_id,
            local_device=self._device.public_key,
            config=self._engine_config,
        )
        (self._engines if active else self._archived)[info.group_id] = engine
        if info.keyring is not None:
            blob = self._keys.open_blob(_KEYRING_KIND, info.keyring)
            assert isinstance(blob, bytes)
            self._keyrings[info.group_id] = GroupKeyring.from_bytes(blob)
        if engine.descriptor.kind == "private":
            sealed = {s.event_id for s in engine.ordered_events() if s.event.kind == "sealed"}
            # Sender-key chains are forward secret: what we read before the restart is
            # read back from the plaintexts we stored (sealed under the local key).
            for event_id in sorted(sealed):
                blob = await self._store.get_meta(_PLAIN_META + event_id.hex())
                if blob is not None:
                    inner = self._keys.open_blob(_PLAIN_KIND, blob)
                    assert isinstance(inner, bytes)
                    engine.provide_plaintext(
                        event_id, InnerEvent.from_bytes(inner, max_size=1 << 17)
                    )
                    sealed.discard(event_id)
            if not active:
                return
            self._undecrypted[info.group_id] = sealed
            # The app was told of these before the restart: decrypt, do not re-announce.
            await self._decrypt_pending(info.group_id, announce=False)
            async with self._lock:
                await self._release_held_keys(info.group_id)
        await self.transport.subscribe(info.group_id)

    def peer_connected(self, peer_id: str) -> bool:
        """A peer connected: sync the groups it is a member of, soon; True if it is one."""
        member = False
        for group_id, engine in self._engines.items():
            if any(peer_id_from_ed25519(d) == peer_id for d in engine.member_devices()):
                self._spawn_sync(group_id, peer_id)
                member = True
        return member

    def _spawn_sync(self, group_id: bytes, peer_id: str) -> None:
        nursery = self.transport._nursery
        if nursery is not None:
            nursery.start_soon(self._try_sync, group_id, peer_id)

    async def _try_sync(self, group_id: bytes, peer_id: str) -> int:
        try:
            return await self.transport.sync_with(group_id, peer_id)
        except (NetworkError, ProtocolError, GroupError, trio.TooSlowError) as exc:
            logger.debug("sync of %s with %s failed: %s", group_id.hex()[:12], peer_id, exc)
            return 0

    async def _sync_loop(self) -> None:
        """Every ~30 s, sync each group with a few random members.

        Most are picked among connected members; one is picked among *all* members and
        dialed if need be. Connections are not restored by themselves after a partition
        heals or a restart, and sides that only talk within themselves would never
        converge: the one random member is what joins them again.
        """
        while True:
            await trio.sleep(30 * self._jitter.uniform(0.8, 1.2))
            for group_id in sorted(self._departing):
                await self._finish_leaving(group_id)
            me = self._network.peer_id
            connected = set(self._network.connected_peers())
            for group_id, engine in list(self._engines.items()):
                members = sorted({peer_id_from_ed25519(d) for d in engine.member_devices()} - {me})
                if not members:
                    continue
                anyone = self._jitter.choice(members)
                near = [p for p in members if p in connected and p != anyone]
                chosen = self._jitter.sample(near, min(_SYNC_FANOUT - 1, len(near)))
                for peer_id in [anyone, *chosen]:
                    await self._connect_and_sync(group_id, peer_id)

    async def _publish_loop(self) -> None:
        """Keep the DHT records of groups we own (and of our public groups' tags) fresh."""
        while True:
            for group_id in list(self._engines):
                try:
                    await self._publish_records(group_id)
                except (NetworkError, LocalProtocolError) as exc:
                    logger.info("publishing group records failed: %s", exc)
            await trio.sleep(self._record_lifetime / 3000 * self._jitter.uniform(0.9, 1.1))

    # -- the API --------------------------------------------------------------------------

    def _active(self, group_id: bytes) -> GroupEngine:
        """The engine of a group we are in, for writing."""
        engine = self._engines.get(group_id)
        if engine is None or group_id in self._departing:
            if group_id in self._archived or group_id in self._departing:
                raise PermissionDeniedError("you are no longer in that group")
            raise NotFoundError("you are not in that group")
        return engine

    async def create(
        self,
        name: str,
        *,
        kind: str = "public",
        tags: tuple[str, ...] = (),
        about: str | None = None,
        join: str | None = None,
        slow_seconds: int = 0,
    ) -> bytes:
        """Create a group; returns its id."""
        rules = Rules(
            join=join or ("open" if kind in ("public", "live") else "invite"),
            post="member",
            invite="member" if kind != "private" else "admin",
            slow=slow_seconds,
        )
        try:
            descriptor = GroupDescriptor(kind=kind, name=name, tags=tags, rules=rules, about=about)
            descriptor.check()
        except (ValueError, WireError) as exc:
            raise ConfigError(f"invalid group: {exc}") from None
        now = self._clock()
        engine, genesis = GroupEngine.create(
            descriptor, device=self._device, now=now, rng=self._rng, config=self._engine_config
        )
        group_id = engine.group_id
        async with self._lock:
            await self._store.put_group(effects.new_group_info(group_id, descriptor, genesis, now))
            self._engines[group_id] = engine
            await self._store_events(group_id, tuple(engine.ordered_events()))
        if kind == "private":
            await self._new_epoch(group_id, engine.state.epoch, ())
        await self.transport.subscribe(group_id)
        try:
            await self._publish_records(group_id)
        except NetworkError as exc:
            logger.info("group records not published yet: %s", exc)
        return group_id

    async def invite(
        self,
        group_id: bytes,
        *,
        role: str = "member",
        expires_in_ms: int = 7 * 24 * 3600 * 1000,
        uses: int = 1,
        account: bytes | None = None,
    ) -> str:
        """Author an invite and return its link text (``p2pchat-invite:...``)."""
        engine = self._active(group_id)
        body, token = new_invite(
            self._rng,
            group=group_id,
            inviter=self._account,
            role=role,
            expires=self._clock() + expires_in_ms,
            uses=uses,
            account=account,
            peers=(self._network.peer_id,),
            name=engine.descriptor.name,
        )
        await self._author(group_id, body)
        return token.to_text()

    async def join(self, what: str) -> bytes:
        """Join by invite link, or by group id (hex) for an open group found by search."""
        text = what.strip()
        secret: bytes | None = None
        peers: tuple[str, ...] = ()
        if text.startswith("p2pchat-invite:"):
            token = InviteToken.from_text(text)
            effects.refuse_expired(token.expires, self._clock())
            group_id, secret, peers = token.group, token.secret, token.peers
        else:
            try:
                group_id = bytes.fromhex(text)
            except ValueError:
                group_id = b""
            if len(group_id) != 32:
                raise ConfigError("expected an invite link or a 64-hex-digit group id")
        if group_id in self._engines:
            return group_id
        self._archived.pop(group_id, None)  # rejoining: start afresh from the genesis
        genesis, record_peers = await self._fetch_genesis(group_id)
        engine = GroupEngine.from_genesis(
            genesis,
            group_id=group_id,
            local_device=self._device.public_key,
            config=self._engine_config,
        )
        engine.expect_history(self._clock())  # the catch-up below is history, not a flood
        descriptor = engine.descriptor
        if secret is None and descriptor.rules.join != "open":
            raise PermissionDeniedError("this group is joined by invitation only")
        now = self._clock()
        async with self._lock:
            await self._store.put_group(effects.new_group_info(group_id, descriptor, genesis, now))
            self._engines[group_id] = engine
            await self._store_events(group_id, tuple(engine.ordered_events()))
        await self.transport.subscribe(group_id)
        sources = list(dict.fromkeys(peers + record_peers))
        for attempt in range(_JOIN_ATTEMPTS):  # catch up first, so our join follows the invite
            if attempt:
                await trio.sleep(self._jitter.uniform(0.5, 1.5))
            for peer_id in sources:
                await self._connect_and_sync(group_id, peer_id)
            if secret is None or effects.knows_invite(engine, secret):
                break
        else:
            # A join ordered before its invite is void for good: do not author it.
            await self._forget(group_id)
            raise NetworkError("could not fetch the invite from the group; try again later")
        await self._author(group_id, MemberJoin(secret=secret))
        if self._account not in engine.state.members:
            # The invite was used up (or its join came too late): the join is void on
            # every replica. Nothing stays half-joined; a fresh invite starts afresh.
            await self._forget(group_id, drop=True)
            raise PermissionDeniedError("this invite link is used up; ask for a fresh one")
        for peer_id in sources:  # hand our join over right away
            await self._try_sync(group_id, peer_id)
        return group_id

    async def _forget(self, group_id: bytes, *, drop: bool = False) -> None:
        """Undo the start of a join that could not complete (a later join starts afresh);
        ``drop``: the group and its events leave the store (we never were a member)."""
        self._engines.pop(group_id, None)
        await self.transport.unsubscribe(group_id)
        info = await self._store.get_group(group_id)
        if drop:
            await self._store.delete_group(group_id)
        elif info is not None:
            await self._store.put_group(
                with_status(info, status=GroupStatus.LEFT, now=self._clock())
            )

    async def _connect_and_sync(self, group_id: bytes, peer_id: str) -> None:
        if peer_id == self._network.peer_id:
            return
        try:
            if peer_id not in self._network.connected_peers():
                found = await self._network.dht.find_peer(peer_id)
                await self._network.connect(peer_id, () if found is None else found.addrs)
        except NetworkError as exc:
            logger.info("cannot reach %s to sync: %s", peer_id, exc)
            return
        await self._try_sync(group_id, peer_id)

    async def leave(self, group_id: bytes) -> None:
        """Leave the group. Our leave event must reach a member: gossip is lossy, and
        once we stop serving the group's sync nobody could fetch it from us. So the group
        is closed only after a sync with some member completed; until then (a partition,
        everyone offline) it stays *departing*: read-only, still answering sync, and the
        hand-over is retried in the background, across restarts. Leaving a group we were
        removed from (or left already) only files it as left: nothing to tell anyone."""
        if group_id in self._archived:
            info = await self._store.get_group(group_id)
            if info is not None and info.status is not GroupStatus.LEFT:
                await self._store.put_group(
                    with_status(info, status=GroupStatus.LEFT, now=self._clock())
                )
            return
        self._active(group_id)
        await self._author(group_id, MemberLeave())
        info = await self._store.get_group(group_id)
        if info is not None:
            await self._store.put_group(
                with_status(info, status=GroupStatus.LEFT, now=self._clock())
            )
        self._departing.add(group_id)
        await self._store.put_meta(_DEPARTING_META + group_id.hex(), b"1")
        await self._finish_leaving(group_id)

    async def _finish_leaving(self, group_id: bytes) -> None:
        # ``leave`` and the sync loop may both get here for one group; the second one
        # used to find the engine gone after its hand-over and crash the node (testnet).
        engine = self._engines.get(group_id)
        if engine is None or group_id in self._finishing:
            return
        self._finishing.add(group_id)
        try:
            if not await self._hand_over(group_id, engine):
                return
            self._departing.discard(group_id)
            await self._store.delete_meta(_DEPARTING_META + group_id.hex())
            await self.transport.unsubscribe(group_id)
            self._archived[group_id] = self._engines.pop(group_id)
        finally:
            self._finishing.discard(group_id)

    async def _hand_over(self, group_id: bytes, engine: GroupEngine) -> bool:
        """Complete one sync with some member (a few tries, random order)."""
        me = self._network.peer_id
        members = sorted({peer_id_from_ed25519(d) for d in engine.member_devices()} - {me})
        self._jitter.shuffle(members)
        for peer_id in members[:_HAND_OVER_TRIES]:
            try:
                if peer_id not in self._network.connected_peers():
                    found = await self._network.dht.find_peer(peer_id)
                    await self._network.connect(peer_id, () if found is None else found.addrs)
                await self.transport.sync_with(group_id, peer_id)
            except (NetworkError, ProtocolError, GroupError, trio.TooSlowError) as exc:
                logger.debug("handing our leave to %s failed: %s", peer_id, exc)
                continue
            return True
        if members:
            logger.info("could not hand our leave to a member yet: will retry")
        return not members

    async def sync(self, group_id: bytes) -> int:
        """Sync now with every connected member; returns events received."""
        engine = self._active(group_id)
        connected = set(self._network.connected_peers())
        total = 0
        for device in engine.member_devices():
            peer_id = peer_id_from_ed25519(device)
            if peer_id in connected and peer_id != self._network.peer_id:
                total += await self._try_sync(group_id, peer_id)
        return total

    def statistics(self) -> dict[str, Any]:
        return {
            "groups": len(self._engines),
            "events": sum(e.statistics()["events"] for e in self._engines.values()),
            "transport": dict(self.transport.stats),
            "rejected": self.transport.rejections.snapshot(),
        }

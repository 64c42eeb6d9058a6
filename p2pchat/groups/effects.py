"""What a group's accepted events do on a node: stored, announced, their effects run.

:class:`GroupEffects` is a base of :class:`~p2pchat.groups.service.Groups`, which owns
the state: the transport hands every result of an engine here (``_on_result``); the
raw events are stored, the view's changes become node events, and the engine's effects
(new sender-key epochs, decrypting what waited for a key, our removal) are run.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence

from ..errors import (
    NotFoundError,
    P2PChatError,
    PermissionDeniedError,
)
from ..events import (
    EventBus,
    GroupChanged,
    GroupLiveComment,
    GroupMessage,
)
from ..protocol.codec import Struct
from ..protocol.group_effects import (
    ForkDetected,
    ForkEvidenceNeeded,
    LiveCommentReceived,
    MemberJoined,
    MemberLeft,
    NewEpochNeeded,
    ReceiveResult,
    RoleChanged,
    SealedReceived,
    SenderKeyNeeded,
)
from ..protocol.group_engine import EngineConfig, GroupEngine
from ..protocol.group_events import (
    DeviceRevoke,
    GroupDescriptor,
    MemberBan,
    MemberInvite,
    MemberRemove,
    Reaction,
)
from ..protocol.group_log import StoredEvent
from ..protocol.group_state import invite_hash
from ..protocol.revocation import Revocation
from ..storage.base import Store
from ..storage.records import GroupInfo, GroupStatus, StoredGroupEvent
from .gossip import GroupTransport
from .sender_keys import SenderKeys

__all__ = [
    "CONTENT_KINDS",
    "GroupEffects",
    "knows_invite",
    "new_group_info",
    "refuse_expired",
    "stored_event_bytes",
    "stored_event_pages",
    "load_engine",
    "with_status",
]

logger = logging.getLogger(__name__)

#: Event kinds announced as group messages (besides ``sealed`` ones we can open).
CONTENT_KINDS = {"post", "reply", "react", "edit", "delete", "share", "poll", "vote", "buy"}


#: Stored events read per query when a group is loaded.
_LOAD_PAGE = 5000


async def stored_event_bytes(store: Store, group_id: bytes) -> list[bytes]:
    """A group's stored event bytes, read a page at a time: only the bytes are kept
    (every row's record and sealed copy at once doubled the peak of a start, and a
    Python process rarely gives such a peak back)."""
    return [data async for page in stored_event_pages(store, group_id) for data in page]


async def stored_event_pages(store: Store, group_id: bytes) -> AsyncIterator[list[bytes]]:
    """A group's stored event bytes in the store's order, a page at a time."""
    after = 0
    while page := await store.group_events(group_id, after_rowid=after, limit=_LOAD_PAGE):
        after = page[-1][0]
        yield [event.data for _, event in page]


async def load_engine(
    store: Store, group_id: bytes, *, local_device: bytes, config: EngineConfig
) -> GroupEngine:
    """A group's engine rebuilt from the store, a page of events at a time (their
    bytes freed before the next page is read: the engine keeps none of them)."""
    loading = GroupEngine.loading(local_device=local_device, config=config)
    async for page in stored_event_pages(store, group_id):
        if not loading.add(page):
            break  # not a causal order: load them all, sorted
    else:
        return loading.finish()
    events = await stored_event_bytes(store, group_id)
    return GroupEngine.load(
        events, trusted=True, in_store=True, local_device=local_device, config=config
    )


def knows_invite(engine: GroupEngine, secret: bytes) -> bool:
    """Whether the group's log holds the invite whose secret is ``secret``."""
    wanted = invite_hash(secret)
    return any(
        isinstance(s.event.parsed, MemberInvite) and s.event.parsed.invite == wanted
        for s in engine.ordered_events()
    )


def new_group_info(
    group_id: bytes, descriptor: GroupDescriptor, genesis: bytes, now: int
) -> GroupInfo:
    """The record of a group just created or joined."""
    return GroupInfo(
        group_id=group_id,
        kind=descriptor.kind,
        name=descriptor.name,
        genesis=genesis,
        status=GroupStatus.ACTIVE,
        joined_at=now,
        updated_at=now,
        tags=tuple(descriptor.tags),
    )


def refuse_expired(expires: int, now: int) -> None:
    """An invite past its expiry is refused before anything is fetched or stored."""
    if expires <= now:
        raise PermissionDeniedError(
            "this invite link has expired; ask a member of the group for a fresh one"
        )


def with_status(info: GroupInfo, *, status: GroupStatus, now: int) -> GroupInfo:
    return dataclasses.replace(info, status=status, updated_at=now)


class GroupEffects(SenderKeys):
    """Persistence and effects of :class:`~p2pchat.groups.service.Groups`."""

    _events: EventBus
    _departing: set[bytes]
    transport: GroupTransport

    async def _author(self, group_id: bytes, body: Struct) -> bytes:
        raise NotImplementedError

    async def revoke_device(self, revocation: Revocation) -> int:
        """Record our account's revocation of one of its devices in every group we are in
        (devices.md section 7): members then refuse what the device writes after its
        last event we hold, and private groups move to a new epoch without it. Returns
        how many groups recorded it."""
        recorded = 0
        for group_id, engine in list(self._engines.items()):
            if group_id in self._departing or not engine.state.is_member(self._account):
                continue
            if engine.is_revoked(revocation.account, revocation.device):
                continue
            body = DeviceRevoke(
                revocation=revocation, upto=engine.revocation_cut(revocation.device)
            )
            try:
                await self._author(group_id, body)
            except P2PChatError as exc:
                logger.warning("group %s: revocation not recorded: %s", group_id.hex(), exc)
                continue
            recorded += 1
        return recorded

    async def _learn_revocations(self, group_id: bytes, accepted: Sequence[StoredEvent]) -> None:
        """A device revoked in a group's log gets no new DM (sender keys included) from us:
        before the new epoch's keys go out."""
        engine = self._engines.get(group_id)
        for stored in accepted:
            body = stored.event.parsed
            if not isinstance(body, DeviceRevoke) or engine is None:
                continue
            rev = body.revocation
            if engine.is_revoked(rev.account, rev.device) and (
                rev.device not in self._dm.targets.revoked
            ):
                await self._dm.drop_device(rev.account, rev.device)

    def engine(self, group_id: bytes) -> GroupEngine:
        """The group's engine, for reading (also of a group we left or were removed from)."""
        engine = self._engines.get(group_id) or self._archived.get(group_id)
        if engine is None:
            raise NotFoundError("you are not in that group")
        return engine

    # -- persistence and effects ----------------------------------------------------------

    async def _on_result(self, group_id: bytes, result: ReceiveResult) -> None:
        async with self._lock:
            await self._store_events(group_id, result.accepted)
            if group_id in self._departing:
                return  # we left: we only relay until our leave is handed over
            for stored in result.accepted:
                if stored.event.kind != "sealed":  # sealed: announced once decrypted
                    self._announce(group_id, stored)
            await self._learn_revocations(group_id, result.accepted)
            for effect in result.effects:
                await self._run_effect(group_id, effect)
            await self._release_held_keys(group_id)

    async def _store_events(self, group_id: bytes, accepted: tuple[StoredEvent, ...]) -> None:
        chain = [s for s in accepted if s.event.kind != "live.comment"]
        if not chain:
            return
        now = self._clock()
        await self._store.add_group_events(
            group_id,
            [
                StoredGroupEvent(
                    event_id=s.event_id,
                    device=s.event.author_device,
                    seq=s.event.seq,
                    lamport=s.event.lamport,
                    data=s.data,
                    received_at=now,
                )
                for s in chain
            ],
        )
        # Stored: their bytes leave the engine's memory (read from the store from now).
        engine = self._engines.get(group_id) or self._archived.get(group_id)
        if engine is not None:
            engine.mark_stored(s.event_id for s in chain)

    def _announce(self, group_id: bytes, stored: StoredEvent) -> None:
        event = stored.event
        if event.kind in CONTENT_KINDS or event.kind == "sealed":
            parsed = event.parsed
            reaction = parsed if isinstance(parsed, Reaction) else None
            self._events.publish(
                GroupMessage(
                    group_id=group_id,
                    event_id=stored.event_id,
                    author=event.author_account,
                    kind=event.kind,
                    text=reaction.emoji
                    if reaction is not None
                    else self._text_of(group_id, stored.event_id),
                    ts=event.ts,
                    target=reaction.target if reaction is not None else b"",
                    on=reaction.on if reaction is not None else True,
                )
            )

    def _text_of(self, group_id: bytes, event_id: bytes) -> str:
        message = self.engine(group_id).message(event_id)
        if message is None or message.content is None:
            return ""
        return message.content.text

    async def _run_effect(self, group_id: bytes, effect: object) -> None:
        if isinstance(effect, MemberJoined):
            self._changed(group_id, "joined", effect.account, effect.role)
        elif isinstance(effect, MemberLeft):
            self._changed(group_id, "banned" if effect.banned else "left", effect.account, None)
            if effect.account == self._account:
                await self._mark_removed(group_id)
        elif isinstance(effect, RoleChanged):
            self._changed(group_id, "role", effect.account, effect.role)
        elif isinstance(effect, NewEpochNeeded):
            await self._new_epoch(group_id, effect.epoch, effect.recipients)
        elif isinstance(effect, SenderKeyNeeded):
            await self._send_sender_key(group_id, effect.recipients)
        elif isinstance(effect, SealedReceived):
            self._undecrypted.setdefault(group_id, set()).add(effect.event_id)
            await self._decrypt_pending(group_id)
        elif isinstance(effect, LiveCommentReceived):
            entry = effect.entry
            self._events.publish(
                GroupLiveComment(
                    group_id=group_id,
                    event_id=entry.event_id,
                    author=entry.account,
                    offset=entry.offset,
                    text=entry.text,
                )
            )
        elif isinstance(effect, ForkDetected):
            self._changed(group_id, "forked", b"", None, device=effect.device)
        elif isinstance(effect, ForkEvidenceNeeded):
            await self._prove_fork(group_id, effect.event_id)

    async def _prove_fork(self, group_id: bytes, event_id: bytes) -> None:
        """A fork against an event whose bytes are in the store: read them, so the
        engine makes the proof (and freezes the device)."""
        found = await self._store.group_event_data(group_id, [event_id])
        if event_id not in found:
            logger.warning("a forked device's stored event is missing from the store")
            return
        result = self.engine(group_id).provide_fork_bytes(event_id, found[event_id])
        for effect in result.effects:
            await self._run_effect(group_id, effect)

    def _announce_own_removal(self, group_id: bytes, body: object) -> None:
        """Our own removal or ban: no effect runs for what we author, so say it here."""
        if isinstance(body, MemberRemove | MemberBan):
            change = "banned" if isinstance(body, MemberBan) else "left"
            self._changed(group_id, change, body.account, None)

    def _changed(
        self,
        group_id: bytes,
        change: str,
        account: bytes,
        role: str | None,
        *,
        device: bytes = b"",
    ) -> None:
        self._events.publish(
            GroupChanged(
                group_id=group_id, change=change, account=account, role=role, device=device
            )
        )

    async def _mark_removed(self, group_id: bytes) -> None:
        """We were removed or banned: keep the history readable, stop taking part."""
        info = await self._store.get_group(group_id)
        if info is not None and info.status is GroupStatus.ACTIVE:
            await self._store.put_group(
                with_status(info, status=GroupStatus.REMOVED, now=self._clock())
            )
        engine = self._engines.pop(group_id, None)
        if engine is not None:
            self._archived[group_id] = engine
            await self.transport.unsubscribe(group_id)

"""Direct-message history for a newly linked device (protocol-spec/devices.md section 4.4):
both sides of ``/p2pchat/history/1.0.0``, a thin trio loop around
:mod:`p2pchat.protocol.device_history`.

The new device *pulls* (:meth:`HistorySync.pull`): it names one of its account's other
devices, a window (``since``) and a cap; that device's user consents (or refuses:
:meth:`HistorySync.confirm`); chunks follow, each stored in one transaction together with
the cursor, so a sync cut off anywhere resumes after the last stored chunk and a chunk
received twice adds nothing (messages keep their ids). Imported messages are stored as
the originals (ids, times, senders, delivery summary) and raise no event but
``device.history_progress``: they are never announced as new or counted unread.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from p2pchat_crypto import cbor
from p2pchat_crypto.errors import CryptoError

from ..dm.streams import reset_quietly
from ..errors import (
    LocalProtocolError,
    NetworkError,
    NotFoundError,
    PeerUnreachableError,
    PermissionDeniedError,
    WireError,
)
from ..events import DeviceHistoryProgress, DeviceHistoryRequest, EventBus
from ..identity.peerid import peer_id_from_ed25519, peer_id_to_key
from ..net.base import FramedStream, Network
from ..protocol.content import Content
from ..protocol.device_history import (
    HISTORY_PROTOCOL,
    MAX_CHUNK_ITEMS,
    MAX_CHUNK_PLAIN,
    MAX_HISTORY_FRAME,
    MAX_HISTORY_MESSAGES,
    MAX_ITEM_BODY,
    HistoryBox,
    HistoryChunk,
    HistoryChunkContent,
    HistoryCursor,
    HistoryDeny,
    HistoryItem,
    HistoryRequest,
    decode_history_message,
)
from ..storage.base import Store, Transaction
from ..storage.records import (
    Conversation,
    ConversationKind,
    DeliveryState,
    Direction,
    NewMessage,
)

__all__ = [
    "HistorySync",
    "HistoryAsk",
    "HistoryResult",
    "LinkHistory",
    "CURSOR_META_PREFIX",
    "LINK_HISTORY_META",
    "save_link_history",
    "load_link_history",
]

logger = logging.getLogger(__name__)

#: ``devices.history.<device hex>``: where a pull stands (CBOR ``{since, max, got, after}``).
CURSOR_META_PREFIX = "devices.history."
#: History a new device asks for as soon as its node runs (``--history`` when linking):
#: CBOR ``{dev, since, max}``, deleted once the linking device has answered.
LINK_HISTORY_META = "devices.history_at_link"
#: How long the existing device waits for its user's consent.
CONSENT_TIMEOUT_S = 120.0
#: How long either side waits for the other's next frame.
FRAME_TIMEOUT_S = 30.0
_PAGE = 500


@dataclass(frozen=True, slots=True)
class HistoryAsk:
    """A device of ours asks for history: ``since`` (ms, 0: all), at most ``max`` messages."""

    device: bytes
    since: int
    max: int
    resume: bool


@dataclass(frozen=True, slots=True)
class HistoryResult:
    """What a pull did: ``received`` messages in all (over resumed runs), ``imported`` the
    new ones this run, of ``total``; ``done`` when nothing is left."""

    device: bytes
    received: int
    imported: int
    total: int
    done: bool


@dataclass(frozen=True, slots=True)
class LinkHistory:
    """History to ask ``device`` (the one we linked through) for once the node runs."""

    device: bytes
    since: int
    max: int


async def save_link_history(store: Store, wanted: LinkHistory) -> None:
    data = {"dev": wanted.device, "since": wanted.since, "max": wanted.max}
    await store.put_meta(LINK_HISTORY_META, cbor.encode(data))


async def load_link_history(store: Store) -> LinkHistory | None:
    """What :func:`save_link_history` kept; ``None`` if nothing (or nothing readable)."""
    data = await store.get_meta(LINK_HISTORY_META)
    if data is None:
        return None
    try:
        value = cbor.decode(data, max_size=256)
    except CryptoError:
        value = None
    if not isinstance(value, dict):
        return None
    device, since, most = value.get("dev"), value.get("since"), value.get("max")
    if not (isinstance(device, bytes) and len(device) == 32):
        return None
    if not (isinstance(since, int) and isinstance(most, int) and since >= 0):
        return None
    return LinkHistory(device=device, since=since, max=min(max(most, 1), MAX_HISTORY_MESSAGES))


@dataclass
class _Pending:
    ask: HistoryAsk
    decided: trio.Event
    accept: bool = False


def _cursor_key(device: bytes) -> str:
    return CURSOR_META_PREFIX + device.hex()


class HistorySync:
    """See the module docstring. ``own_device(key)``: a current device of our account
    other than this one; ``locate(key)``: addresses to dial it."""

    def __init__(
        self,
        *,
        account: bytes,
        device: bytes,
        device_seed: Callable[[], bytes],
        store: Store,
        network: Network,
        events: EventBus,
        rng: Callable[[int], bytes],
        own_device: Callable[[bytes], bool],
        locate: Callable[[bytes], Awaitable[tuple[str, ...]]],
        dm_conversation_id: Callable[[bytes], str],
    ) -> None:
        self._account = account
        self._device = device
        self._seed = device_seed
        self._store = store
        self._network = network
        self._events = events
        self._rng = rng
        self._own_device = own_device
        self._locate = locate
        self._conversation_id = dm_conversation_id
        self._pending: _Pending | None = None
        self._pulling: set[bytes] = set()
        self.consent_timeout_s = CONSENT_TIMEOUT_S
        self.frame_timeout_s = FRAME_TIMEOUT_S
        self.stats = {"served": 0, "chunks_sent": 0, "chunks_received": 0, "imported": 0}

    def __repr__(self) -> str:
        return f"<HistorySync {self.stats}>"

    def start(self) -> None:
        self._network.set_stream_handler(HISTORY_PROTOCOL, self._serve)

    # -- the existing device --------------------------------------------------------------

    def pending(self) -> HistoryAsk | None:
        return self._pending.ask if self._pending is not None else None

    def confirm(self, accept: bool) -> HistoryAsk:
        """Send (``accept``) or refuse the history a device of ours waits for."""
        pending = self._pending
        if pending is None or pending.decided.is_set():
            raise NotFoundError("no device of ours is waiting for history")
        pending.accept = accept
        pending.decided.set()
        return pending.ask

    async def _serve(self, stream: FramedStream) -> None:
        try:
            remote = peer_id_to_key(stream.remote_peer)
        except ValueError:
            raise WireError("wrong-sender", "the peer id holds no Ed25519 key") from None
        with trio.move_on_after(self.frame_timeout_s):
            data = await stream.read_frame(MAX_HISTORY_FRAME)
        if data is None:
            return
        request = decode_history_message(data)
        if not isinstance(request, HistoryRequest):
            raise WireError("unexpected", "expected a history request")
        if remote == self._device or not self._own_device(remote):
            await stream.write_frame(HistoryDeny(t="hdeny", v=1, why="not-ours").to_bytes())
            return
        if self._pending is not None:
            await stream.write_frame(HistoryDeny(t="hdeny", v=1, why="busy").to_bytes())
            return
        ask = HistoryAsk(
            device=remote, since=request.since, max=request.max, resume=request.after is not None
        )
        pending = _Pending(ask=ask, decided=trio.Event())
        self._pending = pending
        try:
            self._events.publish(
                DeviceHistoryRequest(device=remote, since=ask.since, max=ask.max, resume=ask.resume)
            )
            with trio.move_on_after(self.consent_timeout_s):
                await pending.decided.wait()
        finally:
            self._pending = None
        if not pending.accept:
            why = "refused" if pending.decided.is_set() else "timeout"
            await stream.write_frame(HistoryDeny(t="hdeny", v=1, why=why).to_bytes())
            return
        box = HistoryBox(
            existing=self._device, new=remote, own_seed=self._seed(), nonce=request.nonce
        )
        await self._send(stream, box, request)
        self.stats["served"] += 1

    async def _select(self, request: HistoryRequest) -> list[tuple[bytes, bytes]]:
        """``(peer, message id)`` of what the request covers, in order: conversations by
        peer key, messages by position; after the cursor, from ``since``, ``max`` at most."""
        after = request.after
        chosen: list[tuple[bytes, bytes]] = []
        conversations = sorted(
            (c for c in await self._store.list_conversations() if c.kind is ConversationKind.DM),
            key=lambda c: c.peer_account or b"",
        )
        for conversation in conversations:
            peer = conversation.peer_account
            assert peer is not None
            if after is not None and peer < after.peer:
                continue
            position = after.pos if after is not None and peer == after.peer else 0
            while len(chosen) < request.max:
                page = await self._store.list_messages(
                    conversation.conversation_id, after_seq=position, limit=_PAGE
                )
                if not page:
                    break
                position = page[-1].seq
                chosen += [
                    (peer, m.message_id)
                    for m in page
                    if m.sent_at >= request.since and len(m.body) <= MAX_ITEM_BODY
                ]
            if len(chosen) >= request.max:
                break
        return chosen[: request.max]

    async def _send(self, stream: FramedStream, box: HistoryBox, request: HistoryRequest) -> None:
        chosen = await self._select(request)
        index, items, size = 0, list[HistoryItem](), 0
        for sent, (peer, message_id) in enumerate(chosen, start=1):
            message = await self._store.get_message(message_id)
            if message is None:
                continue  # deleted meanwhile
            item = HistoryItem(
                peer=peer,
                pos=message.seq,
                id=message.message_id,
                sender=message.sender_account,
                device=message.sender_device,
                out=message.direction is Direction.OUT,
                ts=message.sent_at,
                rx=message.received_at,
                type=message.content_type,
                body=message.body,
                state=message.state.value,
            )
            item_size = len(item.to_bytes()) + 8
            if items and (len(items) >= MAX_CHUNK_ITEMS or size + item_size > MAX_CHUNK_PLAIN):
                await self._write_chunk(stream, box, index, items, len(chosen) - sent + 1)
                index, items, size = index + 1, [], 0
            items.append(item)
            size += item_size
        await self._write_chunk(stream, box, index, items, 0)

    async def _write_chunk(
        self, stream: FramedStream, box: HistoryBox, index: int, items: list[HistoryItem], left: int
    ) -> None:
        content = HistoryChunkContent(items=tuple(items), left=left)
        with trio.move_on_after(self.frame_timeout_s) as waited:
            await stream.write_frame(box.seal(index, content, rng=self._rng))
        if waited.cancelled_caught:
            raise NetworkError("the other device stopped reading the history")
        self.stats["chunks_sent"] += 1

    # -- the new device -------------------------------------------------------------------

    async def pull(
        self, device: bytes, *, since: int = 0, max_messages: int = MAX_HISTORY_MESSAGES
    ) -> HistoryResult:
        """Ask ``device`` (one of ours) for the history since ``since`` (ms), at most
        ``max_messages``; continue where an earlier pull with the same window stopped.
        ``PermissionDeniedError`` if its user refuses, ``WireError`` for a bad chunk,
        ``NetworkError`` if it is cut off (run it again to resume)."""
        if device == self._device or not self._own_device(device):
            raise NotFoundError("not another current device of this account")
        if device in self._pulling:
            raise LocalProtocolError("history is being copied from that device already")
        self._pulling.add(device)
        try:
            return await self._pull(device, since=since, max_messages=max_messages)
        finally:
            self._pulling.discard(device)

    async def _pull(self, device: bytes, *, since: int, max_messages: int) -> HistoryResult:
        max_messages = min(max(max_messages, 1), MAX_HISTORY_MESSAGES)
        cursor, received = await self._load_cursor(device, since, max_messages)
        nonce = self._rng(16)
        request = HistoryRequest(
            t="hreq",
            v=1,
            nonce=nonce,
            since=since,
            max=max(max_messages - received, 1),
            after=cursor,
        )
        box = HistoryBox(existing=device, new=self._device, own_seed=self._seed(), nonce=nonce)
        stream = await self._open(device)
        imported = 0
        try:
            await stream.write_frame(request.to_bytes())
            index, timeout = 0, self.consent_timeout_s + self.frame_timeout_s
            while True:
                with trio.move_on_after(timeout) as waited:
                    data = await stream.read_frame(MAX_HISTORY_FRAME)
                if waited.cancelled_caught:
                    raise NetworkError("the other device stopped sending history (run it again)")
                if data is None:
                    raise NetworkError("the other device closed the history stream early")
                message = decode_history_message(data)
                if isinstance(message, HistoryDeny):
                    raise PermissionDeniedError(f"the other device sent no history ({message.why})")
                if not isinstance(message, HistoryChunk):
                    raise WireError("unexpected", "expected a history chunk")
                content = box.open(message, expected=index)
                imported += await self._import(device, content, since, max_messages, received)
                self.stats["chunks_received"] += 1
                received += len(content.items)
                total = received + content.left
                done = content.left == 0 or received >= max_messages
                self._events.publish(
                    DeviceHistoryProgress(device=device, received=received, total=total, done=done)
                )
                if done:
                    await self._store.delete_meta(_cursor_key(device))
                    await stream.close()
                    return HistoryResult(
                        device=device, received=received, imported=imported, total=total, done=True
                    )
                index, timeout = index + 1, self.frame_timeout_s
        except BaseException as exc:
            with trio.CancelScope(shield=True):
                await reset_quietly(stream)
            if isinstance(exc, WireError | NetworkError | PermissionDeniedError):
                self._events.publish(
                    DeviceHistoryProgress(
                        device=device,
                        received=received,
                        total=received,
                        done=False,
                        error=str(exc),
                    )
                )
            if isinstance(exc, WireError):
                self._network.penalize(peer_id_from_ed25519(device), exc.reason)
            raise
        finally:
            self.stats["imported"] += imported

    async def _open(self, device: bytes) -> FramedStream:
        peer_id = peer_id_from_ed25519(device)
        try:
            if peer_id not in self._network.connected_peers():
                await self._network.connect(peer_id, await self._locate(device))
            return await self._network.open_stream(peer_id, HISTORY_PROTOCOL)
        except NetworkError as exc:
            raise PeerUnreachableError(f"that device is not reachable now: {exc}") from exc

    async def _load_cursor(
        self, device: bytes, since: int, max_messages: int
    ) -> tuple[HistoryCursor | None, int]:
        data = await self._store.get_meta(_cursor_key(device))
        if data is None:
            return None, 0
        try:
            saved = cbor.decode(data, max_size=1024)
            if saved["since"] != since or saved["max"] != max_messages:
                return None, 0  # another window: start over (stored messages stay)
            return HistoryCursor.from_value(saved["after"]), int(saved["got"])
        except (CryptoError, WireError, KeyError, TypeError, ValueError):
            return None, 0

    async def _import(
        self,
        device: bytes,
        content: HistoryChunkContent,
        since: int,
        max_messages: int,
        received: int,
    ) -> int:
        """Store a chunk's messages and the cursor after it, in one transaction."""
        for item in content.items:
            self._check_item(item)
        if not content.items:
            return 0

        async def work(tx: Transaction) -> int:
            added = 0
            unread: dict[str, int] = {}
            for item in content.items:
                conversation_id = self._conversation_id(item.peer)
                if conversation_id not in unread:
                    conversation = await tx.get_conversation(conversation_id)
                    if conversation is None:
                        conversation = Conversation(
                            conversation_id=conversation_id,
                            kind=ConversationKind.DM,
                            peer_account=item.peer,
                            last_activity=item.rx,
                        )
                        await tx.put_conversation(conversation)
                    unread[conversation_id] = conversation.unread
                result = await tx.add_message(
                    NewMessage(
                        conversation_id=conversation_id,
                        message_id=item.id,
                        sender_account=item.sender,
                        sender_device=item.device,
                        direction=Direction.OUT if item.out else Direction.IN,
                        content_type=item.type,
                        body=item.body,
                        sent_at=item.ts,
                        received_at=item.rx,
                        state=DeliveryState(item.state),
                    )
                )
                added += not result.duplicate
            for conversation_id, count in unread.items():  # history is not news
                after = await tx.get_conversation(conversation_id)
                if after is not None and after.unread != count:
                    await tx.put_conversation(dataclasses.replace(after, unread=count))
            last = content.items[-1]
            cursor = {
                "since": since,
                "max": max_messages,
                "got": received + len(content.items),
                "after": HistoryCursor(peer=last.peer, pos=last.pos).to_value(),
            }
            await tx.put_meta(_cursor_key(device), cbor.encode(cursor))
            return added

        return await self._store.atomically(work)

    def _check_item(self, item: HistoryItem) -> None:
        if item.peer == self._account:
            raise WireError("bad-value", "a conversation with our own account")
        if item.sender != (self._account if item.out else item.peer):
            raise WireError("bad-value", "the sender is neither us nor the conversation's peer")
        try:
            content = Content.from_bytes(item.body, max_size=MAX_ITEM_BODY)
        except WireError as exc:
            raise WireError("bad-value", f"a message body does not decode: {exc}") from None
        if content.type != item.type:
            raise WireError("bad-value", "the content type does not match the body")

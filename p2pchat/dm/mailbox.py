"""Store-and-forward mailboxes (``/p2pchat/mailbox/1.0.0``, wire.md section 11).

A node may volunteer (``MailboxConfig.enabled``) to hold sealed blobs for offline
recipients, under per-sender and total quotas and a TTL. A recipient names the peers
that hold its mail (``MailboxConfig.use``) in its DHT mailbox record, and tells each
contact, inside their encrypted session (hidden DM content ``p2pchat/mailbox-keys``),
its **tag**: an Ed25519 public key made for this purpose only (derived from the
keystore's local key, so it survives restarts without storing anything). Blobs are
addressed to the tag and sealed to its X25519 form (``seal_for_tag``, wire.md section
11), and only the tag's owner can sign a fetch or a delete. What a mailbox learns:
sizes, timing, and the connecting peer.

Fetched frames go through the normal DM receive path (signature, decryption, dedup,
durable store); their receipts are queued back to the sender's device.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio
from nacl.signing import SigningKey

from p2pchat_crypto.kdf import blake2b, hkdf_sha256

from ..config import MailboxConfig
from ..errors import (
    NetworkError,
    NotFoundError,
    P2PChatError,
    ProtocolError,
    WireError,
)
from ..identity.directory import Directory
from ..net.base import FramedStream, Network, PeerInfo
from ..protocol.codec import Struct
from ..protocol.content import Content
from ..protocol.mailbox import (
    MAILBOX_PROTOCOL,
    MAX_BLOB,
    MailboxDelete,
    MailboxDeleted,
    MailboxFetch,
    MailboxHold,
    MailboxItems,
    MailboxRefused,
    MailboxStore,
    MailboxStored,
    decode_mailbox_frame,
    encode_mailbox_frame,
    open_for_tag,
    seal_for_tag,
    sign_request,
    verify_request,
)
from ..protocol.mailbox import MailboxItem as WireItem
from ..storage.base import QuotaExceededError, Store
from ..storage.records import MailboxItem, MailboxQuota
from .service import DirectMessages

__all__ = ["MAILBOX_PROTOCOL", "MAILBOX_CONTENT_TYPE", "MailboxKeys", "Mailbox"]

logger = logging.getLogger(__name__)

#: The hidden content type that carries a recipient's tag and seal key to a contact.
MAILBOX_CONTENT_TYPE = "p2pchat/mailbox-keys"
#: Items per fetch: 16 blobs of at most 64 KiB keep a reply under the 1 MiB frame cap.
FETCH_LIMIT = 16
_MAX_FRAME = 16 * (MAX_BLOB + 256) + 1024
_TAGS_META = "mailbox-keys:"


class MailboxKeys:
    """Our tag key pair (Ed25519), derived from the local key."""

    def __init__(self, local_key: bytes) -> None:
        self.tag_key = SigningKey(
            hkdf_sha256(local_key, salt=b"", info=b"p2pchat mailbox tag v1", length=32)
        )

    def __repr__(self) -> str:
        return f"MailboxKeys(tag={bytes(self.tag_key.verify_key).hex()[:16]}…)"

    @property
    def tag(self) -> bytes:
        return bytes(self.tag_key.verify_key)

    def content(self) -> Content:
        """What we tell contacts (hidden DM content)."""
        return Content(type=MAILBOX_CONTENT_TYPE, body={"tag": self.tag}, text="")


class Mailbox:
    """Both sides of store-and-forward for one node."""

    def __init__(
        self,
        *,
        network: Network,
        store: Store,
        config: MailboxConfig,
        keys: MailboxKeys,
        directory: Directory,
        dm: DirectMessages,
        clock: Callable[[], int],
        rng: Callable[[int], bytes],
    ) -> None:
        self._network = network
        self._store = store
        self._config = config
        self._keys = keys
        self._directory = directory
        self._dm = dm
        self._clock = clock
        self._rng = rng
        self._quota = MailboxQuota(
            max_items_per_sender=config.max_items_per_sender,
            max_bytes_per_sender=config.max_bytes_per_sender,
            max_items_total=config.max_items_total,
            max_bytes_total=config.max_bytes_total,
        )
        self.stats = {"stored": 0, "refused": 0, "served": 0, "deposited": 0, "collected": 0}
        if config.enabled:
            network.set_stream_handler(MAILBOX_PROTOCOL, self._handle)
        dm.control_handlers[MAILBOX_CONTENT_TYPE] = self._learn_keys
        dm.mailbox_deposit = self.deposit
        #: Set by the node for attachments (p2pchat/blobs/mailbox.py): answer
        #: ``mbox.hold(depositor peer, its quota key, request)``, and offer the blobs
        #: a frame names to the recipient's mailboxes before it goes there.
        self.hold_blob: Callable[[str, str, MailboxHold], Awaitable[Struct]] | None = None
        self.before_deposit: Callable[[bytes, list[PeerInfo]], Awaitable[None]] | None = None

    # -- the mailbox side -----------------------------------------------------------------

    async def _handle(self, stream: FramedStream) -> None:
        sender_tag = blake2b(stream.remote_peer.encode(), size=16, person=b"p2pchat-mbox-snd")
        while True:
            frame = await stream.read_frame(_MAX_FRAME)
            if frame is None:
                return
            try:
                reply = await self._serve(decode_mailbox_frame(frame), sender_tag, stream)
            except QuotaExceededError as exc:  # the sender is told why (mbox.refused)
                self.stats["refused"] += 1
                logger.info("mailbox refused to store for %s: %s", stream.remote_peer, exc)
                reply = MailboxRefused(why=f"quota-{exc.scope}")
            except ProtocolError as exc:
                self.stats["refused"] += 1
                logger.info("mailbox refused a request from %s: %s", stream.remote_peer, exc)
                await stream.reset()
                return
            await stream.write_frame(encode_mailbox_frame(reply))

    async def _serve(self, request: object, sender_tag: bytes, stream: FramedStream) -> Struct:
        now = self._clock()
        if isinstance(request, MailboxHold):
            if self.hold_blob is None:
                return MailboxRefused(why="no-blobs")
            return await self.hold_blob(stream.remote_peer, sender_tag.hex(), request)
        if isinstance(request, MailboxStore):
            ttl_ms = min(request.ttl * 1000, self._config.ttl_ms)
            item = MailboxItem(
                item_id=self._rng(16),
                recipient_tag=request.tag,
                sender_tag=sender_tag,
                blob=request.blob,
                stored_at=now,
                expires_at=now + ttl_ms,
            )
            await self._store.put_mailbox(item, quota=self._quota)
            self.stats["stored"] += 1
            return MailboxStored(id=item.item_id, expires=item.expires_at)
        if isinstance(request, MailboxFetch):
            verify_request(request, mailbox=self._network.peer_id, now=now)
            items = await self._store.fetch_mailbox(request.tag, now=now, limit=FETCH_LIMIT + 1)
            if request.after is not None:
                ids = [i.item_id for i in items]
                if request.after in ids:
                    items = items[ids.index(request.after) + 1 :]
            limit = min(request.limit, FETCH_LIMIT)
            self.stats["served"] += min(len(items), limit)
            return MailboxItems(
                items=tuple(
                    WireItem(id=i.item_id, blob=i.blob, at=i.stored_at) for i in items[:limit]
                ),
                more=len(items) > limit,
            )
        if isinstance(request, MailboxDelete):
            verify_request(request, mailbox=self._network.peer_id, now=now)
            mine = {
                i.item_id
                for i in await self._store.fetch_mailbox(request.tag, now=now, limit=10_000)
            }
            count = await self._store.delete_mailbox([i for i in request.ids if i in mine])
            return MailboxDeleted(count=count)
        raise WireError("unexpected-kind", "not a request a mailbox serves")

    async def expire(self) -> int:
        return await self._store.expire_mailbox(self._clock())

    # -- the sender side ------------------------------------------------------------------

    async def _learn_keys(self, account: bytes, device: bytes, content: Content) -> None:
        tag = content.body.get("tag")
        if not (isinstance(tag, bytes) and len(tag) == 32):
            raise WireError("bad-value", "mailbox tag must be 32 bytes")
        # Each device of an account has its own tag (its own mailbox mail: a frame is
        # encrypted for one device); the account's entry is kept for older stores.
        async with self._store.transaction() as tx:
            await tx.put_meta(_TAGS_META + account.hex() + "/" + device.hex(), tag)
            await tx.put_meta(_TAGS_META + account.hex(), tag)
        # Look the mailbox record up now, while the contact is likely online: the
        # directory caches it for when we need it (the contact being away).
        await self._directory.mailboxes_of(account)

    async def deposit(self, account: bytes, device: bytes | None, frame: bytes) -> bool:
        """Leave ``frame`` for ``device`` of ``account`` at one of the account's mailboxes;
        True if one took it. The device's own tag is needed, unless the account is known
        to have only that device (the account's tag, as stores before fan-out kept it)."""
        tag = None
        if device is not None:
            tag = await self._store.get_meta(_TAGS_META + account.hex() + "/" + device.hex())
        if tag is None and self._dm.targets.known(account) in (None, (device,)):
            tag = await self._store.get_meta(_TAGS_META + account.hex())
        if tag is None:
            return False
        boxes = await self._directory.mailboxes_of(account)
        if not boxes:
            return False
        if self.before_deposit is not None:
            await self.before_deposit(account, boxes)
        blob = seal_for_tag(frame, tag=tag, rng=self._rng)
        if len(blob) > MAX_BLOB:
            return False
        request = encode_mailbox_frame(
            MailboxStore(tag=tag, blob=blob, ttl=max(1, self._config.ttl_ms // 1000))
        )
        for box in boxes:
            try:
                reply = await self._exchange(box.peer_id, box.addrs, request)
            except (NetworkError, ProtocolError, NotFoundError) as exc:
                logger.debug("mailbox %s did not take the blob: %s", box.peer_id, exc)
                continue
            if isinstance(reply, MailboxStored):
                self.stats["deposited"] += 1
                return True
            if isinstance(reply, MailboxRefused):
                logger.info("mailbox %s refused the message: %s", box.peer_id, reply.why)
        return False

    # -- the recipient side ---------------------------------------------------------------

    async def announce_to(self, account: bytes) -> None:
        """Tell a contact our mailbox keys (once per contact, if we use mailboxes)."""
        if not self._config.use:
            return
        marker = "mailbox-told:" + account.hex()
        if await self._store.get_meta(marker) == self._keys.tag:
            return
        await self._dm.send_hidden(account, self._keys.content())
        await self._store.put_meta(marker, self._keys.tag)

    async def collect(self) -> int:
        """Fetch, deliver and delete our mail at every mailbox we use; return how many."""
        total = 0
        for peer_id, addrs in self._config.use_peers:
            try:
                total += await self._collect_from(peer_id, addrs)
            except (NetworkError, ProtocolError, NotFoundError) as exc:
                logger.info("could not collect mail from %s: %s", peer_id, exc)
        return total

    async def _collect_from(self, peer_id: str, addrs: tuple[str, ...]) -> int:
        collected = 0
        while True:
            fetch = sign_request(
                MailboxFetch(
                    tag=bytes(32),
                    mailbox=peer_id,
                    ts=self._clock(),
                    limit=FETCH_LIMIT,
                    sig=bytes(64),
                ),
                tag_key=self._keys.tag_key,
            )
            reply = await self._exchange(peer_id, addrs, encode_mailbox_frame(fetch))
            if not isinstance(reply, MailboxItems):
                raise WireError("unexpected-kind", "mailbox did not answer with items")
            done: list[bytes] = []
            for item in reply.items:
                await self._deliver(peer_id, item.blob)
                done.append(item.id)
            if done:
                delete = sign_request(
                    MailboxDelete(
                        tag=bytes(32),
                        mailbox=peer_id,
                        ts=self._clock(),
                        ids=tuple(done),
                        sig=bytes(64),
                    ),
                    tag_key=self._keys.tag_key,
                )
                await self._exchange(peer_id, addrs, encode_mailbox_frame(delete))
            collected += len(done)
            if not reply.more or not done:
                break
        self.stats["collected"] += collected
        return collected

    async def _deliver(self, mailbox_peer: str, blob: bytes) -> None:
        """Open one blob and hand it to the DM layer; a bad blob is dropped, not fatal."""
        try:
            frame = open_for_tag(blob, tag_key=self._keys.tag_key)
        except WireError:
            logger.info("dropped an unreadable blob from mailbox %s", mailbox_peer)
            return
        try:
            replies = await self._dm.receive_frame(
                frame, device=None, peer_id=f"mailbox:{mailbox_peer}"
            )
        except P2PChatError as exc:
            logger.info("dropped a bad frame from mailbox %s: %s", mailbox_peer, exc)
            return
        for reply in replies:  # a receipt, or a refusal: both go back to the sender
            await self._dm.queue_receipt(reply, frame)

    async def _exchange(self, peer_id: str, addrs: tuple[str, ...], request: bytes) -> object:
        if peer_id not in self._network.connected_peers():
            if not addrs:
                found = await self._network.dht.find_peer(peer_id)
                addrs = found.addrs if found is not None else ()
            await self._network.connect(peer_id, addrs)
        stream = await self._network.open_stream(peer_id, MAILBOX_PROTOCOL)
        try:
            with trio.fail_after(30):
                await stream.write_frame(request)
                reply = await stream.read_frame(_MAX_FRAME)
            await stream.close()
        except trio.TooSlowError:
            await stream.reset()
            raise NetworkError("the mailbox did not answer in time") from None
        except BaseException:
            await stream.reset()
            raise
        if reply is None:
            raise NetworkError("the mailbox closed the stream without an answer")
        return decode_mailbox_frame(reply, max_size=_MAX_FRAME)

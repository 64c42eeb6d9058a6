"""Attachments of mail left at a mailbox (protocol-spec/blobs.md section 6).

When a direct message goes to a recipient's mailbox, the encrypted blobs it names go
there too, so the recipient can fetch them later even if the sender is offline by then.

* **Depositing** (:meth:`MailboxBlobs.deposit`): before a frame is left at a recipient's
  mailboxes, every attachment we sent that conversation and no mailbox holds yet is
  offered with ``mbox.hold`` (blob id, manifest, ttl), one mailbox after another until
  one holds it. A refusal is reported with its reason (a ``file.progress`` event of
  direction ``mailbox``, state ``failed``), and the message still goes: the recipient
  can then fetch the file from us while we are online. What is pending is kept in the
  blob index too, so a restart before the mail left does not lose it.
* **Holding** (:meth:`MailboxBlobs.hold`): a mailbox checks the manifest against the
  id, refuses what would exceed the depositor's share or its total
  (``BlobConfig.mailbox_bytes_per_peer`` / ``mailbox_bytes_total``) with
  ``mbox.refused``, then fetches every chunk from the depositor over
  ``/p2pchat/blob/1.0.0`` (the usual verified download) and answers ``mbox.held``. It
  keeps the blob ``mailbox_keep_ms`` at most and serves it to anyone who asks by id,
  like any holder: it holds ciphertext it cannot read. It keeps it until then even once
  fetched: it does not know whom the blob is for, nor how many devices will fetch it,
  and no one acknowledges a blob (blobs.md section 6).

The recipient asks its own mailboxes for the attachments of every message it receives
(they are among the holders tried, beside the sender).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

import trio

from p2pchat.errors import (
    NetworkError,
    NotFoundError,
    P2PChatError,
    QuotaExceededError,
    WireError,
)
from p2pchat.net.base import PeerInfo
from p2pchat.protocol.blob import Manifest
from p2pchat.protocol.blob_fetch import Download
from p2pchat.protocol.content import MediaRef
from p2pchat.protocol.mailbox import (
    MAILBOX_PROTOCOL,
    MailboxHeld,
    MailboxHold,
    MailboxRefused,
    decode_mailbox_frame,
    encode_mailbox_frame,
)

from .service import Blobs
from .transfer import open_to, run_download

__all__ = ["MailboxBlobs", "REFUSAL_TEXT"]

logger = logging.getLogger(__name__)
#: A mailbox answers ``mbox.hold`` once it has fetched the whole blob: allow 30 s plus
#: one second per MiB (a mailbox serves at least that fast over loopback or a LAN).
_BASE_TIMEOUT_S = 30
_BYTES_PER_S = 1024 * 1024
#: Attachments remembered per conversation until a mailbox holds them or they arrive.
_MAX_PENDING = 64
_MAX_REPLY = 4096

#: What a refusal means, for people.
REFUSAL_TEXT = {
    "quota-sender": "the mailbox holds no more files from this sender",
    "quota-total": "the mailbox is full",
    "no-blobs": "the mailbox does not hold files",
    "bad-manifest": "the mailbox found the file's manifest invalid",
    "fetch-failed": "the mailbox could not fetch the file from us",
}


class MailboxBlobs:
    def __init__(self, *, blobs: Blobs, accept: bool, clock: Callable[[], int]) -> None:
        self._blobs = blobs
        self._accept = accept
        self._clock = clock
        self._locks: dict[bytes, trio.Lock] = {}
        self._pending: dict[str, dict[bytes, MediaRef]] = {}
        self.stats = {"held": 0, "refused": 0, "deposited": 0, "deposit_refused": 0}
        self._restore()

    # -- the depositing side ------------------------------------------------------------

    def _restore(self) -> None:
        """What was pending when the node stopped (the refs, keys included, are in the
        blob index; one whose blob is gone is forgotten)."""
        store = self._blobs.store
        for conversation, blob_id in store.mailbox_pending():
            info = store.get(blob_id)
            if info is None or info.ref is None or info.ref.key is None:
                store.drop_mailbox_pending(conversation, [blob_id])
            else:
                self._pending.setdefault(conversation, {})[blob_id] = info.ref

    def sent(self, conversation: str, refs: Iterable[MediaRef]) -> None:
        """Attachments we sent in ``conversation``: offered to a mailbox if its mail goes
        there (remembered across restarts)."""
        pending = self._pending.setdefault(conversation, {})
        added = []
        for ref in refs:
            if ref.key is not None:
                if ref.hash not in pending:
                    added.append(ref.hash)
                pending[ref.hash] = ref
        self._blobs.store.add_mailbox_pending(conversation, added)
        dropped = []
        while len(pending) > _MAX_PENDING:
            oldest = next(iter(pending))
            del pending[oldest]
            dropped.append(oldest)
        self._blobs.store.drop_mailbox_pending(conversation, dropped)
        if not pending:
            del self._pending[conversation]

    def delivered(self, conversation: str, blob_ids: Iterable[bytes]) -> None:
        """The message naming ``blob_ids`` reached the recipient: no mailbox needs them."""
        pending = self._pending.get(conversation)
        if pending is None:
            return
        done = [blob_id for blob_id in blob_ids if pending.pop(blob_id, None) is not None]
        self._blobs.store.drop_mailbox_pending(conversation, done)
        if not pending:
            del self._pending[conversation]

    def pending(self, conversation: str) -> list[MediaRef]:
        return list(self._pending.get(conversation, {}).values())

    async def deposit(self, conversation: str, boxes: Sequence[PeerInfo], ttl_s: int) -> None:
        """Have one of ``boxes`` hold each attachment pending for ``conversation``."""
        for ref in self.pending(conversation):
            try:
                await self._deposit_one(conversation, ref, boxes, ttl_s)
            except P2PChatError as exc:  # never stops the message itself going there
                logger.warning("could not offer file %s to a mailbox: %s", ref.hash.hex(), exc)

    async def _deposit_one(
        self, conversation: str, ref: MediaRef, boxes: Sequence[PeerInfo], ttl_s: int
    ) -> None:
        if not self._blobs.store.complete(ref.hash):
            self.delivered(conversation, [ref.hash])  # gone (gc): nothing to offer
            return
        reasons = []
        for box in boxes:
            why = await self._offer(box, ref, ttl_s)
            if why is None:
                self.delivered(conversation, [ref.hash])
                self.stats["deposited"] += 1
                self._blobs.report(ref.hash, "mailbox", ref.size, ref.size, state="done")
                return
            reasons.append(why)
        self.stats["deposit_refused"] += 1
        reason = "; ".join(dict.fromkeys(reasons)) or "no mailbox is known"
        logger.warning("no mailbox holds file %s: %s", ref.hash.hex()[:16], reason)
        self._blobs.report(ref.hash, "mailbox", 0, ref.size, state="failed", reason=reason)

    async def _offer(self, box: PeerInfo, ref: MediaRef, ttl_s: int) -> str | None:
        """Ask ``box`` to hold ``ref``'s blob; ``None`` when it does, else why not."""
        manifest = self._blobs.store.manifest(ref.hash)
        if manifest is None:
            return "the file is no longer held here"
        request = encode_mailbox_frame(
            MailboxHold(blob=ref.hash, manifest=manifest.to_bytes(), ttl=ttl_s)
        )
        timeout = _BASE_TIMEOUT_S + manifest.cipher_size / _BYTES_PER_S
        network = self._blobs.network
        try:
            stream = await open_to(network, box.peer_id, MAILBOX_PROTOCOL, box.addrs)
            try:
                with trio.fail_after(timeout):
                    await stream.write_frame(request)
                    frame = await stream.read_frame(_MAX_REPLY)
                await stream.close()
            except BaseException:
                await stream.reset()
                raise
            if frame is None:
                raise NetworkError("the mailbox closed the stream without an answer")
            reply = decode_mailbox_frame(frame, max_size=_MAX_REPLY)
        except trio.TooSlowError:
            return "the mailbox did not answer in time"
        except (NetworkError, NotFoundError, WireError) as exc:
            logger.debug("mailbox %s did not take file %s: %s", box.peer_id, ref.hash.hex(), exc)
            return f"mailbox unreachable ({exc})"
        if isinstance(reply, MailboxHeld) and reply.blob == ref.hash:
            return None
        if isinstance(reply, MailboxRefused):
            text = REFUSAL_TEXT.get(reply.why, "refused")
            limit = f", at most {reply.limit:,} bytes" if reply.limit is not None else ""
            return f"{reply.why}: {text}{limit}"
        return "the mailbox answered something else"

    # -- the holding side ---------------------------------------------------------------

    async def hold(
        self, depositor: str, owner: str, request: MailboxHold
    ) -> MailboxHeld | MailboxRefused:
        """Answer ``mbox.hold`` from ``depositor`` (``owner``: its opaque quota key)."""
        if not self._accept:
            return MailboxRefused(why="no-blobs")
        try:
            manifest = Manifest.from_bytes(request.manifest, max_size=len(request.manifest))
        except WireError:
            manifest = None
        if manifest is None or manifest.blob_id != request.blob:
            return MailboxRefused(why="bad-manifest")
        config = self._blobs.config
        store = self._blobs.store
        now = self._clock()
        keep_until = now + min(request.ttl * 1000, config.mailbox_keep_ms)
        lock = self._locks.setdefault(request.blob, trio.Lock())
        try:
            async with lock:
                try:
                    store.hold(
                        request.blob,
                        reason="mailbox",
                        now=now,
                        keep_until=keep_until,
                        owner=owner,
                        size=manifest.cipher_size,
                        quota=config.mailbox_bytes_per_peer,
                        total_quota=config.mailbox_bytes_total,
                    )
                except QuotaExceededError as exc:
                    self.stats["refused"] += 1
                    limit = (
                        config.mailbox_bytes_per_peer
                        if exc.scope == "sender"
                        else config.mailbox_bytes_total
                    )
                    return MailboxRefused(why=f"quota-{exc.scope}", limit=limit)
                store.put_manifest(manifest)
                if not store.complete(request.blob) and not await self._fetch(manifest, depositor):
                    info = store.get(request.blob)
                    if info is not None and info.reason == "mailbox":
                        store.delete(request.blob)
                    self.stats["refused"] += 1
                    return MailboxRefused(why="fetch-failed")
        finally:
            if not lock.statistics().tasks_waiting and not lock.locked():
                self._locks.pop(request.blob, None)
        self.stats["held"] += 1
        return MailboxHeld(blob=request.blob, expires=keep_until)

    async def _fetch(self, manifest: Manifest, depositor: str) -> bool:
        store = self._blobs.store
        download = Download(
            manifest.blob_id,
            manifest=manifest,
            have=store.have(manifest.blob_id),
            window=self._blobs.config.window,
        )
        download.add_source(depositor)
        try:
            await run_download(
                download,
                store=store,
                network=self._blobs.network,
                idle_timeout_ms=self._blobs.config.idle_timeout_ms,
                on_progress=lambda _: None,
            )
        except P2PChatError as exc:
            logger.info("mailbox could not fetch a blob from %s: %s", depositor, exc)
            return False
        return download.done

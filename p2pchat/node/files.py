"""The attachments half of the embedding API (mixed into :class:`p2pchat.node.Node`).

Files are sealed into the blob store when sent (``send_dm(..., attachments=[path])``,
``post(..., attachments=[path])``, ``share(..., image=path)``) and named in the message
by a ``media-ref`` holding the blob id and its key; a receiving node remembers every
attachment it sees, fetches the small ones at once (``BlobConfig.auto_fetch_bytes``)
and the rest on demand (:meth:`FilesApi.save_file`). Formats: protocol-spec/blobs.md.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import trio

from ..blobs.mailbox import MailboxBlobs
from ..blobs.service import Blobs
from ..config import NodeConfig
from ..dm.service import dm_conversation_id
from ..errors import ConfigError, NotFoundError, P2PChatError, WireError
from ..events import DeliveryChanged, EventBus, GroupMessage
from ..groups.service import Groups
from ..identity.peerid import peer_id_from_ed25519
from ..net.base import PeerInfo
from ..protocol.content import MAX_ATTACHMENTS, Content, MediaRef, attachments_of
from ..storage.base import Store
from ..storage.blobs import BlobInfo

__all__ = ["FilesApi", "PathLike"]

logger = logging.getLogger(__name__)
PathLike = str | os.PathLike[str]


class FilesApi:
    """Send, list, fetch and save attachments."""

    _blobs: Blobs | None
    _mailbox_blobs: MailboxBlobs | None
    _config: NodeConfig
    _groups: Groups
    _events: EventBus
    _clock: Callable[[], int]

    def _check(self) -> None:
        raise NotImplementedError

    @property
    def _s(self) -> Store:
        raise NotImplementedError

    def _spawn(self, fn: Callable[..., object], *args: object) -> None:
        raise NotImplementedError

    @property
    def _files(self) -> Blobs:
        self._check()
        assert self._blobs is not None
        return self._blobs

    async def add_file(self, path: PathLike, *, mime: str | None = None) -> MediaRef:
        """Seal a file into our blob store (kept as ``own``); the ``media-ref`` to send."""
        return await self._files.add_file(path, mime=mime)

    async def _attach(self, files: Sequence[PathLike | MediaRef]) -> list[MediaRef]:
        """Paths are sealed now; a ``media-ref`` (a file added before, or received) is
        attached as is, naming us as a holder when we hold it whole."""
        if len(files) > MAX_ATTACHMENTS:
            raise ConfigError(f"at most {MAX_ATTACHMENTS} files go with one message")
        refs = []
        for f in files:
            if isinstance(f, MediaRef):
                if self._files.store.complete(f.hash):
                    f = dataclasses.replace(f, url=f"/p2p/{self._files.peer_id}")
                refs.append(f)
            else:
                refs.append(await self._files.add_file(f))
        return refs

    def _with_attachments(self, text: str, refs: list[MediaRef]) -> Content:
        body: dict[str, object] = {"att": [r.to_value() for r in refs]} if refs else {}
        return Content(type="p2pchat/text", body=body, text=text)

    def files(self) -> list[BlobInfo]:
        """Every blob this node holds or knows how to open, newest first."""
        return self._files.store.list()

    def file_info(self, file_id: str | bytes) -> BlobInfo:
        """A blob by id (bytes) or by a hex prefix of at least 8 digits."""
        if isinstance(file_id, bytes):
            return self._files.info(file_id)
        return self._files.store.find(file_id)

    async def fetch_file(self, file_id: str | bytes, *, sources: Sequence[str] = ()) -> BlobInfo:
        """Download a blob from its holders (several at once) unless we hold it whole."""
        info = self.file_info(file_id)
        return await self._files.fetch(info.blob_id, sources=sources)

    async def save_file(
        self, file_id: str | bytes, out: PathLike, *, overwrite: bool = False
    ) -> Path:
        """Fetch if needed and write the plain file (``out`` may be a directory)."""
        info = self.file_info(file_id)
        return await self._files.save(info.blob_id, Path(out), overwrite=overwrite)

    def collect_files(self) -> tuple[int, int]:
        """Garbage-collect blobs retention no longer covers: (blobs, bytes) freed."""
        return self._files.gc()

    def _files_statistics(self) -> dict[str, object]:
        assert self._mailbox_blobs is not None
        return {**self._files.statistics(), "mailbox": dict(self._mailbox_blobs.stats)}

    # -- mailboxes: attachments of mail left there --------------------------------------

    def _files_sent(self, conversation: str, content: Content) -> None:
        """Remember what a DM carries, to offer it to a mailbox if the DM goes there."""
        refs = attachments_of(content)
        if refs and self._mailbox_blobs is not None:
            self._mailbox_blobs.sent(conversation, refs)

    async def _deposit_files(self, account: bytes, boxes: list[PeerInfo]) -> None:
        """Before mail for ``account`` is left at ``boxes``: have them hold its files."""
        assert self._mailbox_blobs is not None
        ttl_s = max(1, self._config.mailbox.ttl_ms // 1000)
        await self._mailbox_blobs.deposit(dm_conversation_id(account), boxes, ttl_s)

    # -- background: what arrives -----------------------------------------------------

    async def _attachments_loop(self, task_status: trio.TaskStatus[None]) -> None:
        """Remember the attachments of every message we receive; fetch the small ones."""
        async with self._events.stream() as stream:
            task_status.started()
            async for event in stream:
                try:
                    if isinstance(event, DeliveryChanged):
                        await self._note_delivery(event)
                    elif isinstance(event, GroupMessage):
                        self._note_group(event)
                except (WireError, NotFoundError) as exc:
                    logger.debug("attachments of %s not noted: %s", event.type, exc)
                except P2PChatError as exc:
                    logger.info("attachments of %s not noted: %s", event.type, exc)

    def _note_dm(self, sender_device: bytes, content: Content) -> None:
        """A direct message was stored (the DM driver's ``on_received``; the content
        already decoded, so no store read per message): remember its attachments."""
        refs = attachments_of(content)
        if refs:
            # Holders: the sender, and our own mailboxes (mail left there brings its
            # files along, blobs.md section 6).
            sender = peer_id_from_ed25519(sender_device)
            boxes = tuple(peer for peer, _ in self._config.mailbox.use_peers)
            try:
                noted = self._files.note(refs, sources=(sender, *boxes))
            except P2PChatError as exc:
                logger.info("attachments of a direct message not noted: %s", exc)
                return
            for ref in noted:
                self._spawn(self._files.fetch_quietly, ref.hash, "received")

    async def _note_delivery(self, event: DeliveryChanged) -> None:
        """A DM that reached its recipient (or failed) needs no mailbox for its files."""
        if event.state not in ("delivered", "failed") or self._mailbox_blobs is None:
            return
        if not self._mailbox_blobs.pending(event.conversation_id):
            return
        message = await self._s.get_message(event.message_id)
        if message is not None:
            content = Content.from_bytes(message.body, max_size=len(message.body) or 1)
            self._mailbox_blobs.delivered(
                event.conversation_id, [r.hash for r in attachments_of(content)]
            )

    def _note_group(self, event: GroupMessage) -> None:
        shown = self._groups.engine(event.group_id).message(event.event_id)
        if shown is None:
            return
        refs = list(attachments_of(shown.content)) if shown.content is not None else []
        if shown.share is not None and shown.share.image is not None:
            refs.append(shown.share.image)
        if refs:
            author = peer_id_from_ed25519(shown.ref.device)
            for ref in self._files.note(refs, sources=(author,), reason="cache"):
                self._spawn(self._files.fetch_quietly, ref.hash, "cache")

"""The node's attachments: seal files into the blob store, fetch and open blobs.

``add_file`` seals a file under a fresh key (in worker threads, chunk by chunk) and
returns the ``media-ref`` to put in a message; ``note`` remembers the refs of messages
we received (and which peers may hold them); ``fetch`` downloads a blob from up to
``max_sources`` holders at once; ``save`` opens a complete blob into a plain file.
Progress is published as :class:`~p2pchat.events.FileProgress` events, at most a few
per second per file.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import stat
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import Path

import trio

from p2pchat.config import BlobConfig
from p2pchat.errors import (
    ConfigError,
    CryptoFailure,
    NetworkError,
    NotFoundError,
    P2PChatError,
)
from p2pchat.events import EventBus, FileProgress
from p2pchat.net.base import Network
from p2pchat.protocol.blob import (
    BLOB_PROTOCOL,
    CHUNK_SIZE,
    MAX_BLOB_SIZE,
    TAG_LEN,
    Manifest,
    chunk_count,
)
from p2pchat.protocol.blob_fetch import Download
from p2pchat.protocol.content import MediaRef
from p2pchat.storage.blobs import BlobInfo, BlobStore
from p2pchat_crypto.blob import chunk_hash, new_blob_key, open_chunk, seal_chunk
from p2pchat_crypto.errors import AuthenticationError

from . import thumbs
from .serve import BlobServer
from .transfer import run_download

__all__ = ["Blobs", "safe_file_name"]

logger = logging.getLogger(__name__)
_SLOT = CHUNK_SIZE + TAG_LEN
_PROGRESS_EVERY_MS = 250


def safe_file_name(name: str | None, fallback: str) -> str:
    """A peer's file name made harmless as one path component (no directories, no
    control characters, no leading dot), or ``fallback``."""
    if name:
        name = "".join(c for c in name if unicodedata.category(c)[0] != "C")
        name = name.replace("/", "_").replace("\\", "_").strip().lstrip(".")
    return name[:200] if name else fallback


def _clip_utf8(text: str, limit: int) -> str:
    return text.encode()[:limit].decode(errors="ignore")


def _regular_file(path: str | os.PathLike[str]) -> tuple[Path, int]:
    source = Path(path).expanduser()
    try:
        info = source.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read {source}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{source} is not a file")
    if info.st_size > MAX_BLOB_SIZE:
        raise ConfigError(f"{source.name} is too large: the limit is {MAX_BLOB_SIZE:,} bytes")
    return source, info.st_size


def _seal_file(
    source: Path, part: Path, key: bytes, size: int, on_chunk: Callable[[int], None]
) -> list[bytes]:
    """Seal ``source`` chunk by chunk into ``part``; the chunk hashes. Blocking."""
    count = chunk_count(size)
    hashes = []
    read = 0
    try:
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with source.open("rb") as src:
                for i in range(count):
                    plain = src.read(CHUNK_SIZE)
                    sealed = seal_chunk(key, i, plain, last=i == count - 1)
                    os.pwrite(fd, sealed, i * _SLOT)
                    hashes.append(chunk_hash(sealed))
                    read += len(plain)
                    on_chunk(read)
                grown = bool(src.read(1))
        finally:
            os.close(fd)
    except OSError as exc:
        raise ConfigError(f"cannot read {source}: {exc.strerror or exc}") from None
    if grown or read != size:
        raise ConfigError(f"{source.name} changed while it was being sent")
    return hashes


def _target(out: Path, name: str | None, fallback: str, overwrite: bool) -> Path:
    out = out.expanduser()
    if out.is_dir():
        out = out / safe_file_name(name, fallback)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} exists: choose another name or allow overwriting")
    return out


def _open_to(store: BlobStore, manifest: Manifest, key: bytes, target: Path) -> None:
    blob_id = manifest.blob_id
    tmp = target.with_name(f".{target.name}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            last = manifest.chunks - 1
            for i in range(manifest.chunks):
                data = store.read_chunk(blob_id, i)
                if data is None:
                    raise NotFoundError(f"chunk {i} of the file is missing here")
                out.write(open_chunk(key, i, data, last=i == last))
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class _Throttle:
    def __init__(self, clock: Callable[[], int]) -> None:
        self._clock = clock
        self._last = -_PROGRESS_EVERY_MS

    def due(self) -> bool:
        now = self._clock()
        if now - self._last >= _PROGRESS_EVERY_MS:
            self._last = now
            return True
        return False


class Blobs:
    def __init__(
        self,
        *,
        root: Path,
        seal_key: bytes | None,
        network: Network,
        events: EventBus,
        config: BlobConfig,
        clock: Callable[[], int],
        rng: Callable[[int], bytes],
        peer_id: str,
    ) -> None:
        self._store = BlobStore(root, seal_key=seal_key)
        self._network = network
        self._events = events
        self._config = config
        self._clock = clock
        self._rng = rng
        self._peer_id = peer_id
        self._locks: dict[bytes, trio.Lock] = {}
        self.server = BlobServer(
            store=self._store,
            network=network,
            clock=clock,
            rate=config.serve_rate,
            burst=config.serve_burst,
        )
        network.set_stream_handler(BLOB_PROTOCOL, self.server.handle)

    def __repr__(self) -> str:
        return f"<Blobs {self._store.root}>"

    def close(self) -> None:
        self._store.close()

    @property
    def store(self) -> BlobStore:
        return self._store

    @property
    def peer_id(self) -> str:
        return self._peer_id

    @property
    def network(self) -> Network:
        return self._network

    @property
    def config(self) -> BlobConfig:
        return self._config

    def report(
        self, blob_id: bytes, direction: str, done: int, total: int, *, state: str, reason: str = ""
    ) -> None:
        """Publish a ``file.progress`` event (``mailbox``: a mailbox took it, or why not)."""
        self._progress(blob_id, direction, done, total, state=state, reason=reason)

    # -- sending ----------------------------------------------------------------------

    async def add_file(
        self, path: str | os.PathLike[str], *, mime: str | None = None, thumbnail: bool = True
    ) -> MediaRef:
        """Seal ``path`` into the store (held as ``own``) and return its ``media-ref``."""
        source, size = await trio.to_thread.run_sync(_regular_file, path)
        mime = mime or mimetypes.guess_type(source.name)[0] or "application/octet-stream"
        key = new_blob_key(self._rng)
        part = self._store.root / f"{self._rng(8).hex()}.part"
        throttle = _Throttle(self._clock)

        def report(read: int) -> None:
            if throttle.due():
                self._progress(b"", "up", read, size, name=source.name)

        def on_chunk(read: int) -> None:
            trio.from_thread.run_sync(report, read)

        try:
            hashes = await trio.to_thread.run_sync(_seal_file, source, part, key, size, on_chunk)
            manifest = Manifest.build(size, hashes)
            blob_id = self._store.adopt(manifest, part)
        finally:
            part.unlink(missing_ok=True)
        now = self._clock()
        self._store.hold(
            blob_id,
            reason="own",
            now=now,
            keep_until=now + self._config.own_keep_ms,
            size=manifest.cipher_size,
        )
        thumb = None
        if thumbnail and mime.startswith("image/"):
            made = await trio.to_thread.run_sync(thumbs.make_thumbnail, source)
            thumb = made[0] if made else None
        ref = MediaRef(
            hash=blob_id,
            mime=_clip_utf8(mime, 127),
            size=size,
            key=key,
            name=_clip_utf8(source.name, 255) or None,
            url=f"/p2p/{self._peer_id}",
            thumb=thumb,
        )
        self._store.remember(ref, now=now)
        self._progress(blob_id, "up", size, size, state="done", name=source.name)
        return ref

    # -- receiving --------------------------------------------------------------------

    def note(
        self, refs: Iterable[MediaRef], *, sources: Iterable[str] = (), reason: str = "received"
    ) -> list[MediaRef]:
        """Remember encrypted blobs named by a message we received (held for ``reason``:
        ``received`` for DMs, ``cache`` for group media); returns those small enough to
        fetch at once (``auto_fetch_bytes``) and not held yet."""
        hints = tuple(sources)
        auto = []
        for ref in refs:
            if ref.key is None:
                continue  # not an encrypted blob (a plain media hash): nothing to fetch here
            url_peer = _peer_of(ref.url)
            peers = tuple(p for p in (url_peer, *hints) if p and p != self._peer_id)
            self._store.remember(ref, sources=peers, now=self._clock(), reason=reason)
            if ref.size <= self._config.auto_fetch_bytes and not self._store.complete(ref.hash):
                auto.append(ref)
        return auto

    def info(self, blob_id: bytes) -> BlobInfo:
        info = self._store.get(blob_id)
        if info is None:
            raise NotFoundError("no such file is known here")
        return info

    def _candidates(self, info: BlobInfo, extra: Iterable[str]) -> list[str]:
        connected = set(self._network.connected_peers())
        ordered = [*info.sources, *extra]
        # Known holders first (the sender, those who told us), then anyone connected.
        ordered += sorted(connected)
        seen: list[str] = []
        for peer in ordered:
            if peer != self._peer_id and peer not in seen:
                seen.append(peer)
        return seen[: self._config.max_sources]

    async def fetch(
        self, blob_id: bytes, *, reason: str = "received", sources: Iterable[str] = ()
    ) -> BlobInfo:
        """Download a known blob (one whose ``media-ref`` we have) unless complete."""
        info = self.info(blob_id)
        lock = self._locks.setdefault(blob_id, trio.Lock())
        try:
            async with lock:
                if not self._store.complete(blob_id):
                    await self._download(info, list(sources))
        finally:
            if not lock.statistics().tasks_waiting and not lock.locked():
                self._locks.pop(blob_id, None)
        manifest = self._store.manifest(blob_id)
        assert manifest is not None
        self._store.hold(blob_id, reason=reason, now=self._clock(), size=manifest.cipher_size)
        self._store.touch(blob_id, self._clock())
        return self.info(blob_id)

    async def _download(self, info: BlobInfo, extra: list[str]) -> None:
        blob_id = info.blob_id
        download = Download(
            blob_id,
            manifest=self._store.manifest(blob_id),
            have=self._store.have(blob_id),
            window=self._config.window,
        )
        for peer in self._candidates(info, extra):
            download.add_source(peer)
        if not download.sources:
            self._progress(blob_id, "down", 0, 0, state="failed", reason="no-holder")
            raise NotFoundError("no peer that may hold this file is known or connected")
        throttle = _Throttle(self._clock)

        def progress(d: Download) -> None:
            if throttle.due():
                done, total = d.progress()
                self._progress(blob_id, "down", done, total, sources=len(d.live_sources()))

        await run_download(
            download,
            store=self._store,
            network=self._network,
            idle_timeout_ms=self._config.idle_timeout_ms,
            on_progress=progress,
        )
        done, total = download.progress()
        if not download.done:
            why = download.stuck() or "every holder gave up"
            self._progress(blob_id, "down", done, total, state="failed", reason=why)
            raise NetworkError(f"could not fetch the file: {why}")
        manifest = download.manifest
        assert manifest is not None
        if info.ref is not None and manifest.size != info.ref.size:
            self._progress(blob_id, "down", done, total, state="failed", reason="wrong-size")
            raise NetworkError("the file's size differs from what its message said")
        self._progress(blob_id, "down", total, total, state="done", sources=len(download.sources))

    async def fetch_quietly(self, blob_id: bytes, reason: str = "received") -> None:
        """``fetch`` in the background: failures are logged (and published), not raised."""
        try:
            await self.fetch(blob_id, reason=reason)
        except P2PChatError as exc:
            logger.info("background fetch of %s failed: %s", blob_id.hex()[:16], exc)

    async def save(self, blob_id: bytes, out: Path, *, overwrite: bool = False) -> Path:
        """Fetch if needed, then write the plain file to ``out`` (a directory: the file's
        own name inside it). Returns the path written."""
        info = await self.fetch(blob_id)
        if info.ref is None or info.ref.key is None:
            raise NotFoundError("this node cannot open that file (its key is unknown)")
        manifest = self._store.manifest(blob_id)
        assert manifest is not None
        out = await trio.to_thread.run_sync(
            _target, out, info.ref.name, blob_id.hex()[:16], overwrite
        )
        key = info.ref.key
        try:
            await trio.to_thread.run_sync(_open_to, self._store, manifest, key, out)
        except AuthenticationError:
            raise CryptoFailure("the file does not open with the key its message gave") from None
        except OSError as exc:
            raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from None
        return out

    # -- retention --------------------------------------------------------------------

    def gc(self) -> tuple[int, int]:
        return self._store.gc(
            self._clock(),
            own_keep_ms=self._config.own_keep_ms,
            received_keep_ms=self._config.received_keep_ms,
            cache_bytes=self._config.cache_bytes,
        )

    async def run_gc(self) -> None:
        """Collect garbage now and every hour."""
        while True:
            freed = self.gc()
            if freed[0]:
                logger.info("blob gc freed %d blobs, %d bytes", *freed)
            await trio.sleep(3600)

    def statistics(self) -> dict[str, object]:
        return {"held": self._store.usage(), "serving": dict(self.server.stats)}

    def _progress(
        self,
        blob_id: bytes,
        direction: str,
        done: int,
        total: int,
        *,
        state: str = "running",
        reason: str = "",
        sources: int = 0,
        name: str = "",
    ) -> None:
        self._events.publish(
            FileProgress(
                blob_id=blob_id,
                direction=direction,
                done=done,
                total=total,
                state=state,
                reason=reason,
                sources=sources,
                name=name,
            )
        )


def _peer_of(url: str | None) -> str | None:
    if url and url.startswith("/p2p/"):
        peer = url[len("/p2p/") :]
        if 0 < len(peer) <= 128 and peer.isalnum():
            return peer
    return None

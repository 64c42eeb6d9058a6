"""Serving ``/p2pchat/blob/1.0.0``: answer ``blob.want`` frames from the blob store.

Anyone connected may ask (blob ids are unguessable and the bytes are ciphertext), but
what one peer gets is bounded: a token bucket of bytes per peer (``rate-limited`` with a
``retry`` hint when empty), a cap on concurrent streams per peer (``busy``), and a small
cap on request frames. A frame that is not a valid ``blob.want`` ends the stream and
counts against the peer.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from p2pchat.errors import WireError
from p2pchat.net.base import FramedStream, Network
from p2pchat.protocol.blob import (
    BlobChunk,
    BlobManifest,
    BlobNone,
    BlobWant,
    decode_blob_frame,
    encode_blob_frame,
)
from p2pchat.protocol.limits import PeerLimiter
from p2pchat.storage.blobs import BlobStore

__all__ = ["BlobServer", "MAX_REQUEST_FRAME"]

logger = logging.getLogger(__name__)
#: A ``blob.want`` is small: 64 indexes and an id.
MAX_REQUEST_FRAME = 2048
_MAX_STREAMS_PER_PEER = 4


class BlobServer:
    def __init__(
        self,
        *,
        store: BlobStore,
        network: Network,
        clock: Callable[[], int],
        rate: int,
        burst: int,
    ) -> None:
        self._store = store
        self._network = network
        self._clock = clock
        self._limiter = PeerLimiter(rate=rate, burst=burst, strikes=10_000)
        self._rate = rate
        self._streams: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()

    async def handle(self, stream: FramedStream) -> None:
        peer = stream.remote_peer
        if self._streams[peer] >= _MAX_STREAMS_PER_PEER:
            frame = await stream.read_frame(MAX_REQUEST_FRAME)
            if frame is not None:
                want = _want(frame)
                await stream.write_frame(
                    encode_blob_frame(
                        BlobNone(blob=want.blob, why="busy", chunks=want.chunks, retry=1000)
                    )
                )
            return
        self._streams[peer] += 1
        try:
            while (frame := await stream.read_frame(MAX_REQUEST_FRAME)) is not None:
                try:
                    want = _want(frame)
                except WireError as exc:
                    self._network.penalize(peer, exc.reason)
                    raise
                await self._answer(stream, peer, want)
        finally:
            self._streams[peer] -= 1
            if not self._streams[peer]:
                del self._streams[peer]

    async def _answer(self, stream: FramedStream, peer: str, want: BlobWant) -> None:
        manifest = self._store.manifest(want.blob)
        if manifest is None:
            self.stats["not_found"] += 1
            await stream.write_frame(
                encode_blob_frame(BlobNone(blob=want.blob, why="not-found", chunks=want.chunks))
            )
            return
        if want.manifest:
            await stream.write_frame(
                encode_blob_frame(BlobManifest(blob=want.blob, manifest=manifest.to_bytes()))
            )
        missing: list[int] = []
        limited: list[int] = []
        for index in want.chunks:
            if limited:
                limited.append(index)
                continue
            data = self._store.read_chunk(want.blob, index) if index < manifest.chunks else None
            if data is None:
                missing.append(index)
            elif not self._limiter.allow(peer, self._clock(), cost=len(data)):
                limited.append(index)
            else:
                await stream.write_frame(
                    encode_blob_frame(BlobChunk(blob=want.blob, index=index, data=data))
                )
                self.stats["chunks_served"] += 1
                self.stats["bytes_served"] += len(data)
        if missing:
            await stream.write_frame(
                encode_blob_frame(BlobNone(blob=want.blob, why="missing", chunks=tuple(missing)))
            )
        if limited:
            self.stats["rate_limited"] += 1
            retry = max(50, 1000 * len(limited) * manifest.cipher_len(0) // self._rate)
            await stream.write_frame(
                encode_blob_frame(
                    BlobNone(
                        blob=want.blob,
                        why="rate-limited",
                        chunks=tuple(limited),
                        retry=min(retry, 30_000),
                    )
                )
            )


def _want(frame: bytes) -> BlobWant:
    message = decode_blob_frame(frame, max_size=MAX_REQUEST_FRAME)
    if not isinstance(message, BlobWant):
        raise WireError("unexpected-kind", "a blob holder accepts only blob.want")
    return message

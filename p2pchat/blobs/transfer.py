"""Fetching one blob from several holders at once: one stream per holder, many
``blob.want`` frames in flight on each, every decision taken by the sans-IO
:class:`~p2pchat.protocol.blob_fetch.Download`.

Each holder gets a task that asks for what the download assigns it, stores what
arrives (after the download verified it) and asks again; when it has nothing in flight
and nothing to ask it waits for a change elsewhere (a holder vanished and gave chunks
back, say). A holder silent for ``idle_timeout_ms`` counts as gone.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import trio

from p2pchat.errors import NetworkError, P2PChatError, PeerUnreachableError, WireError
from p2pchat.net.base import FramedStream, Network
from p2pchat.protocol.blob import (
    BLOB_PROTOCOL,
    MAX_CHUNKS,
    BlobChunk,
    BlobManifest,
    BlobNone,
    BlobWant,
    decode_blob_frame,
    encode_blob_frame,
)
from p2pchat.protocol.blob_fetch import Download
from p2pchat.protocol.framing import MAX_FRAME
from p2pchat.storage.blobs import BlobStore

__all__ = ["run_download", "open_to"]

logger = logging.getLogger(__name__)
#: A manifest frame may exceed a chunk frame: 32 bytes per chunk plus a little.
_MAX_ANSWER = max(MAX_FRAME, 32 * MAX_CHUNKS + 4096)


class _Pulse:
    """Wakes every waiter when something changed."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def wait(self) -> None:
        await self._event.wait()


async def run_download(
    download: Download,
    *,
    store: BlobStore,
    network: Network,
    idle_timeout_ms: int,
    on_progress: Callable[[Download], None],
) -> None:
    """Run until the blob is complete or no holder can finish it (check ``download``)."""
    pulse = _Pulse()
    async with trio.open_nursery() as nursery:
        for peer in download.live_sources():
            nursery.start_soon(
                _holder, download, peer, store, network, idle_timeout_ms, pulse, on_progress
            )


async def _holder(
    download: Download,
    peer: str,
    store: BlobStore,
    network: Network,
    idle_timeout_ms: int,
    pulse: _Pulse,
    on_progress: Callable[[Download], None],
) -> None:
    stream: FramedStream | None = None
    try:
        stream = await open_to(network, peer)
        await _exchange(download, peer, stream, store, network, idle_timeout_ms, pulse, on_progress)
    except trio.TooSlowError:
        download.source_failed(peer, "timeout")
    except WireError as exc:
        network.penalize(peer, exc.reason)
        download.source_failed(peer, exc.reason)
    except P2PChatError as exc:
        logger.debug("blob holder %s: %s", peer, exc)
        download.source_failed(peer, "unreachable" if stream is None else "closed")
    finally:
        pulse.notify()
        if stream is not None:
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(1),
                contextlib.suppress(P2PChatError),
            ):
                await stream.close()


async def open_to(
    network: Network, peer: str, protocol: str = BLOB_PROTOCOL, addrs: tuple[str, ...] = ()
) -> FramedStream:
    """A stream to ``peer`` (dialled at ``addrs`` first if given and not connected); a
    peer we know no address of is looked up in the DHT."""
    if addrs and peer not in network.connected_peers():
        await network.connect(peer, addrs)
    try:
        return await network.open_stream(peer, protocol)
    except PeerUnreachableError:
        found = await network.dht.find_peer(peer)
        if found is None or not found.addrs:
            raise
        await network.connect(peer, found.addrs)
        return await network.open_stream(peer, protocol)


async def _exchange(
    download: Download,
    peer: str,
    stream: FramedStream,
    store: BlobStore,
    network: Network,
    idle_timeout_ms: int,
    pulse: _Pulse,
    on_progress: Callable[[Download], None],
) -> None:
    blob = download.blob_id
    state = download.sources[peer]
    expected = 0  # answers (chunks or "none" frames) still due on this stream
    if download.manifest is None:
        await stream.write_frame(encode_blob_frame(BlobWant(blob=blob, manifest=True, chunks=())))
        expected += 1
    while True:
        if download.done or download.stuck() is not None or state.failed is not None:
            return
        # Ask for more when half the window has drained: fewer, larger requests.
        if download.manifest is not None and len(state.in_flight) <= download.window // 2:
            picked = download.assign(peer)
            if picked:
                await stream.write_frame(
                    encode_blob_frame(BlobWant(blob=blob, manifest=False, chunks=tuple(picked)))
                )
                expected += len(picked)
        if not expected and not state.in_flight:
            await pulse.wait()  # nothing to do here until another holder changes things
            continue
        with trio.fail_after(idle_timeout_ms / 1000):
            frame = await stream.read_frame(_MAX_ANSWER)
        if frame is None:
            raise NetworkError("the holder closed the stream")
        message = decode_blob_frame(frame, max_size=_MAX_ANSWER)
        if getattr(message, "blob", blob) != blob:
            raise WireError("unexpected-kind", "an answer about another blob")
        if isinstance(message, BlobManifest):
            expected = max(0, expected - 1)
            fresh = download.manifest is None
            manifest = download.on_manifest(peer, message.manifest)
            if fresh:
                store.put_manifest(manifest)
                on_progress(download)
                pulse.notify()
        elif isinstance(message, BlobChunk):
            expected = max(0, expected - 1)
            if message.index not in state.in_flight:
                raise WireError("unexpected-kind", "a chunk that was not asked for")
            if download.on_chunk(peer, message.index, message.data):
                store.write_chunk(blob, message.index, message.data, verified=True)
                on_progress(download)
                pulse.notify()  # wakes idle holders (and all of them once it is done)
            elif download.sources[peer].failed is not None:
                raise WireError("bad-chunk", f"chunk {message.index} does not match its hash")
        elif isinstance(message, BlobNone):
            if message.why == "not-found":
                download.source_failed(peer, "not-found")
                return
            expected = max(0, expected - max(1, len(message.chunks)))
            if message.why == "missing":
                download.on_missing(peer, message.chunks)
            else:
                download.on_refused(peer, message.chunks)
                pulse.notify()
                await trio.sleep(min(message.retry or 1000, 30_000) / 1000)
            pulse.notify()
        else:
            raise WireError("unexpected-kind", f"{type(message).__name__} from a holder")

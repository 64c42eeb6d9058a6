"""Encrypted blobs (attachments): the manifest, the ``/p2pchat/blob/1.0.0`` frames.

A file is sealed chunk by chunk under a per-file key (:mod:`p2pchat_crypto.blob`). The
**manifest** lists the hash of every sealed chunk; the **blob id** is the BLAKE2b-256
(personalisation ``p2pchat-blob``) of the manifest's canonical CBOR, so it commits to
every ciphertext byte. A fetcher first gets the manifest (from any holder) and checks it
against the id, then checks every chunk against its hash on arrival: a holder can
neither substitute nor corrupt a single bit without being caught, and chunks may come
from several holders at once. The per-file key and the id travel inside an end-to-end
encrypted message (``media-ref`` fields ``h`` and ``k``): holders store bytes they cannot
read. Sans-IO: the download scheduler lives in :mod:`p2pchat.protocol.blob_fetch`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from p2pchat.errors import LocalProtocolError, WireError
from p2pchat_crypto.blob import CHUNK_SIZE, TAG_LEN, chunk_hash, open_chunk, seal_chunk
from p2pchat_crypto.kdf import blake2b, constant_time_equal

from .codec import Bool, Bytes, ListOf, Struct, Text, UInt, wire
from .framing import MAX_FRAME
from .kinded import KindedFrame, KindedFrames

__all__ = [
    "BLOB_PROTOCOL",
    "CHUNK_SIZE",
    "TAG_LEN",
    "MAX_BLOB_SIZE",
    "MAX_CHUNKS",
    "MAX_WANT",
    "chunk_count",
    "Manifest",
    "blob_id_of",
    "seal_bytes",
    "open_bytes",
    "BlobFrame",
    "BlobWant",
    "BlobManifest",
    "BlobChunk",
    "BlobNone",
    "BLOB_KINDS",
    "BLOB_FRAMES",
    "NONE_REASONS",
    "decode_blob_frame",
    "encode_blob_frame",
]

BLOB_PROTOCOL = "/p2pchat/blob/1.0.0"
#: Largest file (plaintext) v1 moves: 2 GiB, 8,192 chunks (a 256 KiB manifest).
MAX_BLOB_SIZE = 2 * 1024**3
MAX_CHUNKS = MAX_BLOB_SIZE // CHUNK_SIZE
#: Most chunk indexes in one ``blob.want``.
MAX_WANT = 64
_ID = Bytes(32)


def chunk_count(size: int) -> int:
    """Chunks of a file of ``size`` plaintext bytes (an empty file has one, empty)."""
    return max(1, -(-size // CHUNK_SIZE))


@dataclass(frozen=True, kw_only=True)
class Manifest(Struct):
    """The chunk list of a blob; its hash is the blob id."""

    version: int = wire("v", UInt(1, 1), "manifest version, 1")
    size: int = wire("size", UInt(0, MAX_BLOB_SIZE), "plaintext bytes of the file")
    chunk_size: int = wire("cs", UInt(CHUNK_SIZE, CHUNK_SIZE), "plaintext bytes per chunk")
    hashes: bytes = wire(
        "hs", Bytes(low=32, high=32 * MAX_CHUNKS), "BLAKE2b-256 of each sealed chunk, concatenated"
    )

    def __post_init__(self) -> None:
        if len(self.hashes) != 32 * chunk_count(self.size):
            raise ValueError("hs must hold one 32-byte hash per chunk")

    @classmethod
    def build(cls, size: int, hashes: list[bytes]) -> Manifest:
        return cls(version=1, size=size, chunk_size=CHUNK_SIZE, hashes=b"".join(hashes))

    @property
    def blob_id(self) -> bytes:
        return blob_id_of(self.to_bytes())

    @property
    def chunks(self) -> int:
        return len(self.hashes) // 32

    @property
    def cipher_size(self) -> int:
        """Bytes of ciphertext a holder stores (plaintext plus one tag per chunk)."""
        return self.size + TAG_LEN * self.chunks

    def plain_len(self, index: int) -> int:
        if not 0 <= index < self.chunks:
            raise IndexError(index)
        if index < self.chunks - 1:
            return CHUNK_SIZE
        return self.size - CHUNK_SIZE * (self.chunks - 1)

    def cipher_len(self, index: int) -> int:
        return self.plain_len(index) + TAG_LEN

    def chunk_hash(self, index: int) -> bytes:
        return self.hashes[32 * index : 32 * index + 32]

    def verify(self, index: int, data: bytes) -> bool:
        """True if ``data`` is exactly sealed chunk ``index`` of this blob."""
        if not 0 <= index < self.chunks or len(data) != self.cipher_len(index):
            return False
        return constant_time_equal(chunk_hash(data), self.chunk_hash(index))


def blob_id_of(manifest_bytes: bytes) -> bytes:
    """The blob id: BLAKE2b-256, personalisation ``p2pchat-blob``, of the manifest's CBOR."""
    return blake2b(manifest_bytes, size=32, person=b"p2pchat-blob")


def seal_bytes(key: bytes, plaintext: bytes) -> tuple[Manifest, list[bytes]]:
    """Seal a whole file held in memory: its manifest and its sealed chunks."""
    n = chunk_count(len(plaintext))
    chunks = [
        seal_chunk(key, i, plaintext[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE], last=i == n - 1)
        for i in range(n)
    ]
    return Manifest.build(len(plaintext), [chunk_hash(c) for c in chunks]), chunks


def open_bytes(key: bytes, manifest: Manifest, chunks: list[bytes]) -> bytes:
    """The plaintext of verified sealed chunks (``AuthenticationError`` on a wrong key)."""
    last = manifest.chunks - 1
    return b"".join(open_chunk(key, i, c, last=i == last) for i, c in enumerate(chunks))


# -- /p2pchat/blob/1.0.0 frames -------------------------------------------------------------


#: ``{v: 1, k, p}``, like mailbox frames.
BlobFrame = KindedFrame


@dataclass(frozen=True, kw_only=True)
class BlobWant(Struct):
    """Ask for a blob's manifest and/or some of its chunks."""

    KIND: ClassVar[str] = "blob.want"
    blob: bytes = wire("b", _ID, "blob id")
    manifest: bool = wire("man", Bool(), "send the manifest first")
    chunks: tuple[int, ...] = wire(
        "i", ListOf(UInt(0, MAX_CHUNKS - 1), 0, MAX_WANT), "chunk indexes wanted, in order"
    )


@dataclass(frozen=True, kw_only=True)
class BlobManifest(Struct):
    KIND: ClassVar[str] = "blob.man"
    blob: bytes = wire("b", _ID, "blob id")
    manifest: bytes = wire(
        "m", Bytes(low=1, high=32 * MAX_CHUNKS + 64), "canonical CBOR of the manifest"
    )


@dataclass(frozen=True, kw_only=True)
class BlobChunk(Struct):
    KIND: ClassVar[str] = "blob.chunk"
    blob: bytes = wire("b", _ID, "blob id")
    index: int = wire("i", UInt(0, MAX_CHUNKS - 1), "chunk index")
    data: bytes = wire("d", Bytes(low=TAG_LEN, high=CHUNK_SIZE + TAG_LEN), "the sealed chunk")


#: Why a holder does not serve (``blob.none``): it has not the blob, lacks some chunks
#: (a partial holder), or refuses for now (``rate-limited``, ``busy``: try later).
NONE_REASONS = ("not-found", "missing", "rate-limited", "busy")


@dataclass(frozen=True, kw_only=True)
class BlobNone(Struct):
    KIND: ClassVar[str] = "blob.none"
    blob: bytes = wire("b", _ID, "blob id")
    why: str = wire("why", Text(1, 32), "not-found, missing, rate-limited or busy")
    chunks: tuple[int, ...] = wire(
        "i", ListOf(UInt(0, MAX_CHUNKS - 1), 0, MAX_WANT), "the wanted chunks not sent"
    )
    retry: int | None = wire("retry", UInt(), "ask again after this many ms", optional=True)


#: The ``/p2pchat/blob/1.0.0`` frames (:mod:`p2pchat.protocol.kinded`).
BLOB_FRAMES = KindedFrames("blob", (BlobWant, BlobManifest, BlobChunk, BlobNone))
BLOB_KINDS = BLOB_FRAMES.kinds


def decode_blob_frame(data: bytes, *, max_size: int = MAX_FRAME) -> Struct:
    """Strictly decode a blob frame and its payload (the hashes are checked by the caller).

    A canonical ``blob.chunk`` frame is parsed in place (below); anything else, every
    malformed chunk frame included, goes to the generic strict decoder, which accepts or
    refuses it exactly as it always did.
    """
    if len(data) <= max_size:
        chunk = _parse_chunk_frame(data)
        if chunk is not None:
            return chunk
    return BLOB_FRAMES.decode(data, max_size=max_size)


def encode_blob_frame(message: Struct) -> bytes:
    """The frame of ``message`` (``LocalProtocolError`` if it is not a valid blob frame)."""
    if type(message) is BlobChunk:
        try:
            message.check()
        except WireError as exc:
            raise LocalProtocolError(f"refusing to send an invalid message: {exc}") from exc
        head, tail = _chunk_parts(message.blob, message.index, len(message.data))
        return b"".join((head, message.data, tail))
    return BLOB_FRAMES.encode(message)


# -- blob.chunk frames in place ----------------------------------------------------------
#
# A chunk frame is nearly all chunk. The generic codec copies its 256 KiB several times
# and re-encodes it twice (frame, payload) to prove it canonical: ~3 ms of a chunk's
# ~10 ms in the transfer benchmark. Canonical CBOR is unique, so a frame is canonical
# exactly when it equals the bytes the encoder builds from the fields read out of it:
# that comparison (of the few bytes around the chunk) is the whole check. Same wire
# format, same accepted set: tests/protocol/test_blob.py checks both against the
# generic codec.

_CHUNK_PREFIX = b"\xa3\x61k\x6ablob.chunk\x61p"  # {"k": "blob.chunk", "p": bstr ...
_CHUNK_SUFFIX = b"\x61v\x01"  # ..., "v": 1}
_PAYLOAD_PREFIX = b"\xa3\x61b\x58\x20"  # the payload {"b": 32 bytes, "d": ..., "i": ...}
_WIDTHS = ((24, 1), (25, 2), (26, 4), (27, 8))


def _head(major: int, value: int) -> bytes:
    """A CBOR head (major type and argument) in its shortest form."""
    if value < 24:
        return bytes((major << 5 | value,))
    for extra, width in _WIDTHS:
        if value < 1 << (8 * width):
            return bytes((major << 5 | extra,)) + value.to_bytes(width, "big")
    raise ValueError("CBOR argument out of range")


def _read_head(data: bytes, pos: int, major: int) -> tuple[int, int] | None:
    """(argument, next position) of a head of type ``major`` at ``pos``, in any width."""
    if pos >= len(data) or data[pos] >> 5 != major:
        return None
    extra = data[pos] & 0x1F
    if extra < 24:
        return extra, pos + 1
    if extra > 27:
        return None
    end = pos + 1 + (1 << (extra - 24))
    if end > len(data):
        return None
    return int.from_bytes(data[pos + 1 : end], "big"), end


def _chunk_parts(blob: bytes, index: int, length: int) -> tuple[bytes, bytes]:
    """The bytes before and after a chunk's ``length`` bytes in its canonical frame."""
    d_head = _head(2, length)
    tail = b"\x61i" + _head(0, index)
    payload = len(_PAYLOAD_PREFIX) + len(blob) + 2 + len(d_head) + length + len(tail)
    head = b"".join((_CHUNK_PREFIX, _head(2, payload), _PAYLOAD_PREFIX, blob, b"\x61d", d_head))
    return head, tail + _CHUNK_SUFFIX


def _parse_chunk_frame(frame: bytes) -> BlobChunk | None:
    """The chunk of a canonical, valid ``blob.chunk`` frame, else ``None``."""
    if not frame.startswith(_CHUNK_PREFIX):
        return None
    payload = _read_head(frame, len(_CHUNK_PREFIX), 2)
    if payload is None:
        return None
    at = payload[1] + len(_PAYLOAD_PREFIX)
    blob = frame[at : at + 32]
    data = _read_head(frame, at + 34, 2)
    if data is None or not TAG_LEN <= data[0] <= CHUNK_SIZE + TAG_LEN:
        return None
    length, start = data
    index = _read_head(frame, start + length + 2, 0)
    if index is None or index[0] >= MAX_CHUNKS or len(blob) != 32:
        return None
    head, tail = _chunk_parts(blob, index[0], length)
    if (
        start != len(head)
        or len(frame) != start + length + len(tail)
        or frame[:start] != head
        or frame[start + length :] != tail
    ):
        return None
    return BlobChunk(blob=blob, index=index[0], data=frame[start : start + length])

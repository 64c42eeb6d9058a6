"""``blob.chunk`` frames are encoded and decoded in place (no CBOR copies of the chunk):
the bytes must be exactly the generic codec's, and every input, valid or not, must be
accepted or refused exactly as the generic strict decoder does."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.errors import LocalProtocolError, WireError
from p2pchat.protocol.blob import (
    BLOB_FRAMES,
    CHUNK_SIZE,
    MAX_CHUNKS,
    TAG_LEN,
    BlobChunk,
    decode_blob_frame,
    encode_blob_frame,
)
from p2pchat.protocol.codec import Struct

# Lengths at every CBOR head width change: inline (< 24), 1, 2 and 4 bytes.
_LENGTHS = st.sampled_from([TAG_LEN, 23, 24, 255, 256, 65535, 65536, CHUNK_SIZE + TAG_LEN])
_INDEXES = st.sampled_from([0, 23, 24, 255, 256, MAX_CHUNKS - 1]) | st.integers(0, MAX_CHUNKS - 1)


def _outcome(decode: object, frame: bytes) -> Struct | str:
    try:
        return decode(frame, max_size=1 << 20)  # type: ignore[operator,no-any-return]
    except WireError as exc:
        return exc.reason


@settings(max_examples=60, deadline=None)
@given(blob=st.binary(min_size=32, max_size=32), index=_INDEXES, length=_LENGTHS)
def test_chunk_frames_are_byte_for_byte_the_generic_encoding(
    blob: bytes, index: int, length: int
) -> None:
    chunk = BlobChunk(blob=blob, index=index, data=bytes([index % 251]) * length)
    frame = encode_blob_frame(chunk)
    assert frame == BLOB_FRAMES.encode(chunk)
    assert decode_blob_frame(frame) == chunk == BLOB_FRAMES.decode(frame)


_EDIT = st.tuples(
    st.sampled_from(["flip", "insert", "delete"]), st.integers(0), st.integers(0, 255)
)


@settings(max_examples=250, deadline=None)
@given(
    index=_INDEXES,
    length=st.sampled_from([TAG_LEN, 23, 24, 255, 256]),
    edits=st.lists(_EDIT, min_size=1, max_size=3),
    cut=st.none() | st.integers(0),
)
def test_damaged_chunk_frames_get_the_generic_decoders_verdict(
    index: int, length: int, edits: list[tuple[str, int, int]], cut: int | None
) -> None:
    frame = bytearray(
        encode_blob_frame(BlobChunk(blob=b"\x07" * 32, index=index, data=b"d" * length))
    )
    for op, where, value in edits:
        at = where % (len(frame) + 1)
        if op == "flip" and at < len(frame):
            frame[at] ^= value or 1
        elif op == "insert":
            frame[at:at] = bytes([value])
        elif at < len(frame):
            del frame[at]
    if cut is not None:
        del frame[cut % (len(frame) + 1) :]
    damaged = bytes(frame)
    assert _outcome(decode_blob_frame, damaged) == _outcome(BLOB_FRAMES.decode, damaged)


def test_a_chunk_length_in_a_longer_head_than_needed_is_refused() -> None:
    chunk = BlobChunk(blob=b"\x01" * 32, index=3, data=b"x" * TAG_LEN)
    frame = encode_blob_frame(chunk)
    short_head = b"\x61d" + bytes([0x40 | TAG_LEN])
    assert frame.count(short_head) == 1
    # The same length in a 1-byte argument, the payload's own length grown by one.
    longer = frame.replace(short_head, b"\x61d\x58" + bytes([TAG_LEN]))
    at = longer.index(b"\x61p\x58") + 3  # the payload's length, a 1-byte argument
    longer = longer[:at] + bytes([longer[at] + 1]) + longer[at + 1 :]
    assert _outcome(decode_blob_frame, longer) == "non-canonical"
    assert _outcome(BLOB_FRAMES.decode, longer) == "non-canonical"


def test_chunk_frames_keep_the_size_cap_and_refuse_invalid_chunks() -> None:
    frame = encode_blob_frame(BlobChunk(blob=b"\x01" * 32, index=0, data=b"x" * 1000))
    with pytest.raises(WireError) as caught:
        decode_blob_frame(frame, max_size=len(frame) - 1)
    assert caught.value.reason == "too-large"
    with pytest.raises(LocalProtocolError):
        encode_blob_frame(BlobChunk(blob=b"\x01" * 32, index=0, data=b"x" * (TAG_LEN - 1)))
    with pytest.raises(LocalProtocolError):
        encode_blob_frame(BlobChunk(blob=b"\x01" * 31, index=0, data=b"x" * TAG_LEN))

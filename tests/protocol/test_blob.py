"""Encrypted blobs: chunk sealing, manifests, frames, and the multi-holder download
scheduler (sans-IO). The vectors of protocol-spec/vectors/blob/ are regenerated and
checked here."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pycddl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.errors import WireError
from p2pchat.protocol.blob import (
    CHUNK_SIZE,
    BlobChunk,
    BlobWant,
    Manifest,
    blob_id_of,
    chunk_count,
    decode_blob_frame,
    encode_blob_frame,
    open_bytes,
    seal_bytes,
)
from p2pchat.protocol.blob_fetch import Download
from p2pchat.protocol.content import Content, MediaRef, attachments_of
from p2pchat.protocol.schema import full_schema
from p2pchat_crypto.blob import chunk_hash, open_chunk
from p2pchat_crypto.errors import AuthenticationError

VECTORS = Path(__file__).resolve().parents[2] / "protocol-spec" / "vectors"
KEY = bytes(range(32))
# Three chunks, the last one short: the smallest file with first, middle and last chunks.
SIZE = 2 * CHUNK_SIZE + 1000
DATA = bytes((j * 13) % 256 for j in range(SIZE))
MANIFEST, CHUNKS = seal_bytes(KEY, DATA)


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("_gen_blob", VECTORS / "gen_blob.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vectors_regenerate_identically_and_open() -> None:
    gen = _generator()
    for rel, text in gen.generate().items():
        assert (VECTORS / rel).read_text() == text, f"stale: {rel} (run make vectors)"
    doc = json.loads((VECTORS / "blob" / "blob.json").read_text())
    for f in doc["files"]:
        manifest = Manifest.from_bytes(bytes.fromhex(f["manifest"]), max_size=1 << 20)
        assert manifest.blob_id.hex() == f["blob_id"]
        assert manifest.chunks == len(f["chunks"]) == chunk_count(f["size"])
        for c in f["chunks"]:
            assert manifest.chunk_hash(c["index"]).hex() == c["hash"]
    for frame in doc["frames"]:
        message = decode_blob_frame(bytes.fromhex(frame["hex"]))
        assert frame["kind"] == message.KIND  # type: ignore[attr-defined]
        rule = "blob-frame-" + frame["kind"].replace(".", "-")
        pycddl.Schema(full_schema(rule)).validate_cbor(bytes.fromhex(frame["hex"]))


def test_round_trip_and_geometry() -> None:
    assert MANIFEST.chunks == 3
    assert [len(c) for c in CHUNKS] == [MANIFEST.cipher_len(i) for i in range(3)]
    assert MANIFEST.cipher_size == SIZE + 3 * 16
    assert open_bytes(KEY, MANIFEST, CHUNKS) == DATA
    assert MANIFEST.blob_id == blob_id_of(MANIFEST.to_bytes())
    empty, chunks = seal_bytes(KEY, b"")
    assert empty.chunks == 1
    assert len(chunks[0]) == 16
    assert open_bytes(KEY, empty, chunks) == b""


@settings(max_examples=60, deadline=None)
@given(index=st.integers(0, 2), position=st.integers(0, CHUNK_SIZE + 15), bit=st.integers(0, 7))
def test_a_single_flipped_bit_in_any_chunk_is_caught(index: int, position: int, bit: int) -> None:
    chunk = bytearray(CHUNKS[index])
    position %= len(chunk)
    chunk[position] ^= 1 << bit
    assert not MANIFEST.verify(index, bytes(chunk))
    with pytest.raises(AuthenticationError):
        open_chunk(KEY, index, bytes(chunk), last=index == 2)


def test_chunks_cannot_move_or_be_truncated() -> None:
    assert not MANIFEST.verify(1, CHUNKS[0])
    assert not MANIFEST.verify(2, CHUNKS[2][:-1])
    assert not MANIFEST.verify(3, CHUNKS[2])
    with pytest.raises(AuthenticationError):  # the last flag is authenticated
        open_chunk(KEY, 1, CHUNKS[1], last=True)
    with pytest.raises(AuthenticationError):
        open_chunk(bytes(32), 0, CHUNKS[0], last=False)


def test_a_manifest_must_list_one_hash_per_chunk() -> None:
    with pytest.raises(WireError) as info:
        Manifest.from_value({"v": 1, "size": SIZE, "cs": CHUNK_SIZE, "hs": b"\x00" * 64})
    assert info.value.reason == "invalid"


def _drive(download: Download, holders: dict[str, list[bytes] | None]) -> None:
    """Serve every assignment at once until done or stuck (None: a holder that lacks all)."""
    while not download.done and download.stuck() is None:
        progressed = False
        for peer, chunks in holders.items():
            for i in download.assign(peer):
                progressed = True
                if chunks is None:
                    download.on_missing(peer, (i,))
                else:
                    download.on_chunk(peer, i, chunks[i])
        assert progressed or download.stuck() is not None


@settings(max_examples=30, deadline=None)
@given(have=st.sets(st.integers(0, 2)))
def test_resumption_from_any_point_asks_only_the_rest(have: set[int]) -> None:
    download = Download(MANIFEST.blob_id, manifest=MANIFEST, have=have)
    download.add_source("a")
    asked: list[int] = []
    while not download.done:
        picked = download.assign("a")
        asked += picked
        for i in picked:
            assert download.on_chunk("a", i, CHUNKS[i])
    assert sorted(asked) == sorted(set(range(3)) - have)


def test_manifest_from_a_holder_is_checked_against_the_id() -> None:
    download = Download(MANIFEST.blob_id)
    download.add_source("liar")
    download.add_source("honest")
    other, _ = seal_bytes(bytes(32), DATA)
    with pytest.raises(WireError) as info:
        download.on_manifest("liar", other.to_bytes())
    assert info.value.reason == "bad-manifest"
    assert download.assign("honest") == []  # nothing to ask before a manifest
    download.on_manifest("honest", MANIFEST.to_bytes())
    assert download.live_sources() == ["honest"]
    _drive(download, {"honest": CHUNKS})
    assert download.done


def test_several_holders_share_the_work_and_a_vanished_one_is_replaced() -> None:
    download = Download(MANIFEST.blob_id, manifest=MANIFEST, window=1)
    for peer in ("a", "b", "c"):
        download.add_source(peer)
    first = {p: download.assign(p) for p in ("a", "b", "c")}
    assert sorted(i for v in first.values() for i in v) == [0, 1, 2]  # no duplicates
    download.on_chunk("a", first["a"][0], CHUNKS[first["a"][0]])
    download.source_failed("b", "closed")  # vanishes with its chunk in flight
    download.on_chunk("c", first["c"][0], CHUNKS[first["c"][0]])
    _drive(download, {"a": CHUNKS, "c": CHUNKS})
    assert download.done
    assert download.sources["b"].received == 0


def test_a_corrupt_chunk_drops_its_holder_and_is_fetched_elsewhere() -> None:
    download = Download(MANIFEST.blob_id, manifest=MANIFEST, window=3)
    download.add_source("bad")
    download.add_source("good")
    bad = [c[:-1] + bytes([c[-1] ^ 1]) for c in CHUNKS]
    for i in download.assign("bad"):
        assert not download.on_chunk("bad", i, bad[i])
    assert download.sources["bad"].failed == "bad-chunk"
    _drive(download, {"good": CHUNKS})
    assert download.done


def test_gives_up_with_a_reason_when_no_holder_has_a_chunk() -> None:
    download = Download(MANIFEST.blob_id, manifest=MANIFEST)
    download.add_source("partial")
    _drive(download, {"partial": None})
    assert download.stuck() == "no holder has chunk 0 (of 3)"
    download.source_failed("partial", "closed")
    assert download.stuck() == "no holder could send it (closed)"


def test_frames_round_trip_and_refuse_oversized_chunks() -> None:
    want = BlobWant(blob=MANIFEST.blob_id, manifest=True, chunks=(0, 1))
    assert decode_blob_frame(encode_blob_frame(want)) == want
    chunk = BlobChunk(blob=MANIFEST.blob_id, index=0, data=CHUNKS[0])
    assert decode_blob_frame(encode_blob_frame(chunk)) == chunk
    with pytest.raises(WireError):
        BlobChunk.from_value({"b": MANIFEST.blob_id, "i": 0, "d": b"x" * (CHUNK_SIZE + 17)})


def test_attachments_travel_in_a_text_body_and_the_key_stays_out_of_repr() -> None:
    ref = MediaRef(hash=MANIFEST.blob_id, mime="image/png", size=SIZE, key=KEY, name="a.png")
    content = Content(type="p2pchat/text", body={"att": [ref.to_value()]}, text="")
    decoded = Content.from_bytes(content.to_bytes(), max_size=1 << 16)
    assert attachments_of(decoded) == (ref,)
    assert KEY.hex() not in repr(ref)
    assert KEY.hex()[:16] not in repr(ref)
    assert chunk_hash(CHUNKS[0]) == MANIFEST.chunk_hash(0)

"""Encrypted-blob vectors (wire.md §12): chunk sealing, chunk hashes, manifest, blob id,
and one of each ``/p2pchat/blob/1.0.0`` frame. The plaintexts are given by a rule, not
spelled out: byte ``j`` of a file of ``size`` bytes is ``(j * 7 + size) % 251``."""

from __future__ import annotations

import json
from typing import Any

from p2pchat.protocol.blob import (
    CHUNK_SIZE,
    BlobChunk,
    BlobManifest,
    BlobNone,
    BlobWant,
    chunk_count,
    encode_blob_frame,
    seal_bytes,
)
from p2pchat_crypto.blob import chunk_hash

KEY = bytes(range(32))
SIZES = (0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE + 1000)
NOTE = (
    "plaintext byte j of a file of `size` bytes is (j * 7 + size) % 251; key is 00..1f. "
    "For each chunk: the first 32 bytes of its ciphertext (`head`), its length and its hash."
)


def plaintext(size: int) -> bytes:
    return bytes((j * 7 + size) % 251 for j in range(size))


def _file(size: int) -> dict[str, Any]:
    manifest, chunks = seal_bytes(KEY, plaintext(size))
    assert manifest.chunks == chunk_count(size) == len(chunks)
    return {
        "size": size,
        "key": KEY.hex(),
        "chunks": [
            {"index": i, "len": len(c), "head": c[:32].hex(), "hash": chunk_hash(c).hex()}
            for i, c in enumerate(chunks)
        ],
        "manifest": manifest.to_bytes().hex(),
        "blob_id": manifest.blob_id.hex(),
    }


def _frames(small: dict[str, Any]) -> list[dict[str, Any]]:
    blob = bytes.fromhex(small["blob_id"])
    _, chunks = seal_bytes(KEY, plaintext(small["size"]))
    messages = [
        ("want manifest and chunks", BlobWant(blob=blob, manifest=True, chunks=(0,))),
        ("manifest", BlobManifest(blob=blob, manifest=bytes.fromhex(small["manifest"]))),
        ("chunk", BlobChunk(blob=blob, index=0, data=chunks[0])),
        ("none", BlobNone(blob=blob, why="rate-limited", chunks=(0,), retry=500)),
    ]
    return [
        {"name": name, "kind": m.KIND, "hex": encode_blob_frame(m).hex()}  # type: ignore[attr-defined]
        for name, m in messages
    ]


def generate() -> dict[str, str]:
    files = [_file(size) for size in SIZES]
    doc = {"note": NOTE, "chunk_size": CHUNK_SIZE, "files": files, "frames": _frames(files[1])}
    return {"blob/blob.json": json.dumps(doc, sort_keys=True, indent=2) + "\n"}

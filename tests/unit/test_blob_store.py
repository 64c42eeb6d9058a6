"""The blob store: chunks verified on the way in, resumption from what is on disk after
a restart (a torn chunk does not count), keys sealed at rest, retention and quotas."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from p2pchat.errors import QuotaExceededError, StorageError
from p2pchat.protocol.blob import CHUNK_SIZE, TAG_LEN, seal_bytes
from p2pchat.protocol.content import MediaRef
from p2pchat.storage.blobs import BlobStore

KEY = bytes(range(32))
SEAL = b"\x42" * 32
DATA = bytes((i * 7) % 256 for i in range(3 * CHUNK_SIZE + 10))
MANIFEST, CHUNKS = seal_bytes(KEY, DATA)
BLOB = MANIFEST.blob_id
DAY = 24 * 3600 * 1000


def test_a_download_resumes_from_the_chunks_written_whole(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, seal_key=SEAL)
    store.put_manifest(MANIFEST)
    store.write_chunk(BLOB, 0, CHUNKS[0])
    store.write_chunk(BLOB, 2, CHUNKS[2])
    with pytest.raises(StorageError):
        store.write_chunk(BLOB, 1, CHUNKS[2])  # not chunk 1's bytes
    store.close()
    # A crash in the middle of writing chunk 3: half of it reached the disk.
    fd = os.open(tmp_path / f"{BLOB.hex()}.dat", os.O_WRONLY)
    os.pwrite(fd, CHUNKS[3][: len(CHUNKS[3]) // 2], 3 * (CHUNK_SIZE + TAG_LEN))
    os.close(fd)
    reopened = BlobStore(tmp_path, seal_key=SEAL)
    assert reopened.have(BLOB) == {0, 2}
    assert reopened.read_chunk(BLOB, 2) == CHUNKS[2]
    assert reopened.read_chunk(BLOB, 1) is None
    assert not reopened.complete(BLOB)
    reopened.write_chunk(BLOB, 1, CHUNKS[1])
    reopened.write_chunk(BLOB, 3, CHUNKS[3])
    assert reopened.complete(BLOB)
    assert reopened.held_bytes(BLOB) == MANIFEST.cipher_size


def test_the_key_is_sealed_at_rest_and_needs_the_local_key(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, seal_key=SEAL)
    ref = MediaRef(hash=BLOB, mime="text/plain", size=len(DATA), key=KEY, name="secret-name.txt")
    store.remember(ref, sources=("12D3KooWpeer",), now=1)
    assert store.get(BLOB) is not None
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if "index" in p.name)
    assert KEY not in raw
    assert b"secret-name" not in raw
    again = BlobStore(tmp_path, seal_key=SEAL)
    info = again.get(BLOB)
    assert info is not None
    assert info.ref == ref
    assert info.sources == ("12D3KooWpeer",)
    assert again.find(BLOB.hex()[:10]).blob_id == BLOB
    again.close()
    with pytest.raises(StorageError):
        BlobStore(tmp_path, seal_key=b"\x43" * 32).get(BLOB)


def _held(store: BlobStore, data: bytes) -> bytes:
    manifest, chunks = seal_bytes(KEY, data)
    store.put_manifest(manifest)
    for i, c in enumerate(chunks):
        store.write_chunk(manifest.blob_id, i, c)
    return manifest.blob_id


def test_retention_and_the_cache_cap(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, seal_key=None)
    own = _held(store, b"own")
    store.hold(own, reason="own", now=0, keep_until=30 * DAY)
    received = _held(store, b"received")
    store.hold(received, reason="received", now=0)
    old_cache, new_cache = _held(store, b"a" * 1000), _held(store, b"b" * 1000)
    store.hold(old_cache, reason="cache", now=0)
    store.hold(new_cache, reason="cache", now=5)
    kept = {"own_keep_ms": 30 * DAY, "received_keep_ms": 10 * DAY, "cache_bytes": 1500}
    assert store.gc(DAY, **kept) == (1, 1016)  # the least recently used cache entry
    assert store.get(old_cache) is None
    assert not (tmp_path / f"{old_cache.hex()}.dat").exists()
    store.touch(received, 5 * DAY)
    assert store.gc(12 * DAY, **kept) == (0, 0)  # used 7 days ago: kept
    assert store.gc(31 * DAY, **kept)[0] == 2  # own expired, received unused for 26 days
    assert [i.blob_id for i in store.list()] == [new_cache]


def test_a_stronger_reason_wins_and_a_peer_quota_is_enforced(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, seal_key=None)
    store.hold(BLOB, reason="cache", now=0)
    store.hold(BLOB, reason="own", now=1)
    store.hold(BLOB, reason="cache", now=2)
    info = store.get(BLOB)
    assert info is not None
    assert info.reason == "own"
    store.hold(b"\x01" * 32, reason="mailbox", now=0, owner="p", size=600, quota=1000)
    with pytest.raises(QuotaExceededError):
        store.hold(b"\x02" * 32, reason="mailbox", now=0, owner="p", size=500, quota=1000)
    store.hold(b"\x02" * 32, reason="mailbox", now=0, owner="q", size=500, quota=1000)


def test_the_total_held_for_others_is_capped_whoever_deposits(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, seal_key=None)
    store.hold(BLOB, reason="own", now=0, size=5000)  # our own blobs do not count
    store.hold(b"\x01" * 32, reason="mailbox", now=0, owner="p", size=600, total_quota=1000)
    with pytest.raises(QuotaExceededError) as refused:
        store.hold(b"\x02" * 32, reason="mailbox", now=0, owner="q", size=500, total_quota=1000)
    assert refused.value.scope == "total"
    assert store.get(b"\x02" * 32) is None  # nothing recorded
    # The same blob held again (another depositor) is not counted twice.
    store.hold(b"\x01" * 32, reason="mailbox", now=1, owner="q", size=600, total_quota=1000)


def test_files_pending_for_a_mailbox_are_kept_across_a_reopen_until_dropped(
    tmp_path: Path,
) -> None:
    store = BlobStore(tmp_path, seal_key=SEAL)
    other = b"\x09" * 32
    store.add_mailbox_pending("dm:aa", [BLOB, other])
    store.add_mailbox_pending("dm:aa", [BLOB])  # already there
    store.add_mailbox_pending("dm:bb", [BLOB])
    store.close()
    store = BlobStore(tmp_path, seal_key=SEAL)
    assert store.mailbox_pending() == (("dm:aa", BLOB), ("dm:aa", other), ("dm:bb", BLOB))
    store.drop_mailbox_pending("dm:aa", [other])
    assert store.mailbox_pending() == (("dm:aa", BLOB), ("dm:bb", BLOB))
    store.delete(BLOB)  # a blob that is gone is pending nowhere
    assert store.mailbox_pending() == ()

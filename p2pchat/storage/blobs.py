"""The blob store: sealed chunks of attachments in ``<home>/blobs/``, and their index.

Kept apart from the message store (its own files and its own SQLite index), because
blobs are large, written chunk by chunk, and garbage collected on their own schedule.

* ``<id hex>.man``: the manifest (canonical CBOR; its hash is the id);
* ``<id hex>.dat``: the sealed chunks, chunk ``i`` at offset ``i * (CHUNK_SIZE + 16)``
  (a sparse file while a download is under way);
* ``index.sqlite3``: one row per blob: why we hold it, its size, times; and, for blobs
  we can open, the ``media-ref`` (with its per-file key) and the peers that may hold it,
  sealed at rest under the node's local key like the message store's private columns
  (:mod:`p2pchat.storage._at_rest`). Beside it, the attachments we sent that a mailbox
  should hold if their message goes there (conversation id and blob id, in the clear
  like the message store's ids), so that a restart does not forget them.

The chunks are ciphertext under per-file keys that live only in (sealed) messages and in
that sealed column, so a copied home reveals the sizes and times of blobs, never their
content. Which chunks of a blob we hold is not recorded: on first use each chunk of the
data file is checked against the manifest (BLAKE2b runs at ~1 GB/s), so a download
interrupted by a crash resumes with exactly the chunks that were written whole.

Calls are synchronous and short (one row, one chunk): callers in trio may call them
directly; sealing or opening a whole file belongs in a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from p2pchat.errors import ClosedError, NotFoundError, StorageError, WireError
from p2pchat.protocol.blob import CHUNK_SIZE, TAG_LEN, Manifest
from p2pchat.protocol.content import MediaRef
from p2pchat_crypto import cbor
from p2pchat_crypto.errors import DecodeError

from ._at_rest import AtRest
from .base import QuotaExceededError

__all__ = ["BlobStore", "BlobInfo", "HOLD_REASONS"]

#: Why a blob is held: ``own`` (we sent it), ``received`` (we fetched it), ``cache``
#: (group media, trimmed by size), ``mailbox`` (held for another peer, under its quota).
HOLD_REASONS = ("own", "received", "cache", "mailbox")
_SLOT = CHUNK_SIZE + TAG_LEN
_SCHEMA = """
CREATE TABLE IF NOT EXISTS blobs (
    id BLOB PRIMARY KEY,
    reason TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL,
    last_used INTEGER NOT NULL,
    keep_until INTEGER,
    owner TEXT,
    private BLOB
);
CREATE TABLE IF NOT EXISTS mailbox_pending (
    conversation TEXT NOT NULL,
    id BLOB NOT NULL,
    PRIMARY KEY (conversation, id)
);
"""


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """What the index says about one blob (``ref`` is ``None`` for blobs we cannot open)."""

    blob_id: bytes
    reason: str
    size: int
    created: int
    last_used: int
    keep_until: int | None
    owner: str | None
    complete: bool
    held_bytes: int
    ref: MediaRef | None
    sources: tuple[str, ...]

    def __repr__(self) -> str:
        return f"BlobInfo({self.blob_id.hex()[:16]}, {self.reason}, complete={self.complete})"


class BlobStore:
    def __init__(self, root: Path, *, seal_key: bytes | None) -> None:
        self._root = root
        self._rest = AtRest(seal_key)
        self._have: dict[bytes, set[int]] = {}
        self._manifests: dict[bytes, Manifest] = {}
        self._data_files: dict[bytes, str] = {}
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        index = root / "index.sqlite3"
        fd = os.open(index, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        try:
            self._db = sqlite3.connect(index, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the blob index: {exc}") from exc
        self._closed = False

    def _sql(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        """One statement; ``ClosedError`` once closed (a late stream handler at shutdown)."""
        if self._closed:
            raise ClosedError("the blob store is closed")
        try:
            return self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise StorageError(f"the blob index failed: {exc}") from exc

    def __repr__(self) -> str:
        return f"<BlobStore {self._root}>"

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()

    @property
    def root(self) -> Path:
        return self._root

    # -- files ------------------------------------------------------------------------

    def _path(self, blob_id: bytes, ext: str) -> Path:
        return self._root / f"{blob_id.hex()}.{ext}"

    def _data_file(self, blob_id: bytes) -> str:
        """The data file's path (as a string: building a ``Path`` per chunk showed in
        profiles of a transfer)."""
        path = self._data_files.get(blob_id)
        if path is None:
            path = self._data_files[blob_id] = os.fspath(self._path(blob_id, "dat"))
        return path

    def manifest(self, blob_id: bytes) -> Manifest | None:
        cached = self._manifests.get(blob_id)
        if cached is not None:
            return cached
        try:
            data = self._path(blob_id, "man").read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read a blob manifest: {exc.strerror or exc}") from exc
        try:
            manifest = Manifest.from_bytes(data, max_size=len(data) or 1)
        except WireError:
            manifest = None
        if manifest is None or manifest.blob_id != blob_id:
            raise StorageError(f"the manifest of blob {blob_id.hex()[:16]} is damaged")
        self._manifests[blob_id] = manifest
        return manifest

    def put_manifest(self, manifest: Manifest) -> bytes:
        """Store a (verified) manifest; returns the blob id. Idempotent."""
        blob_id = manifest.blob_id
        path = self._path(blob_id, "man")
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(manifest.to_bytes())
                tmp.replace(path)
            except OSError as exc:
                raise StorageError(f"cannot write a manifest: {exc.strerror or exc}") from exc
        self._manifests[blob_id] = manifest
        return blob_id

    def adopt(self, manifest: Manifest, data_file: Path) -> bytes:
        """Take a data file of sealed chunks we wrote ourselves (all of them, at their
        offsets) as the blob of ``manifest``; returns the blob id."""
        blob_id = self.put_manifest(manifest)
        try:
            data_file.replace(self._path(blob_id, "dat"))
        except OSError as exc:
            raise StorageError(f"cannot store the sealed file: {exc.strerror or exc}") from exc
        self._have[blob_id] = set(range(manifest.chunks))
        return blob_id

    def have(self, blob_id: bytes) -> set[int]:
        """Indexes of the chunks we hold whole and verified (a copy: callers may keep it)."""
        found = self._have.get(blob_id)
        if found is None:
            found = self._scan(blob_id)
            self._have[blob_id] = found
        return set(found)

    def _scan(self, blob_id: bytes) -> set[int]:
        manifest = self.manifest(blob_id)
        if manifest is None:
            return set()
        found: set[int] = set()
        try:
            with self._path(blob_id, "dat").open("rb") as f:
                for i in range(manifest.chunks):
                    f.seek(i * _SLOT)
                    if manifest.verify(i, f.read(manifest.cipher_len(i))):
                        found.add(i)
        except OSError:  # no data file yet (or unreadable): nothing held
            pass
        return found

    def complete(self, blob_id: bytes) -> bool:
        manifest = self.manifest(blob_id)
        return manifest is not None and len(self.have(blob_id)) == manifest.chunks

    def write_chunk(
        self, blob_id: bytes, index: int, data: bytes, *, verified: bool = False
    ) -> None:
        """Store chunk ``index``. It is checked against the blob's manifest unless the
        caller just did so against that same manifest (``verified``: a download, which
        must check before it counts the chunk; hashing 256 KiB twice was ~6 % of one)."""
        manifest = self.manifest(blob_id)
        if manifest is None or not (verified or manifest.verify(index, data)):
            raise StorageError("refusing to store a chunk that does not match its manifest")
        try:
            fd = os.open(self._data_file(blob_id), os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.pwrite(fd, data, index * _SLOT)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StorageError(f"cannot write a chunk: {exc.strerror or exc}") from exc
        self.have(blob_id)  # load before adding, so a scan does not run later
        self._have[blob_id].add(index)

    def read_chunk(self, blob_id: bytes, index: int) -> bytes | None:
        """A chunk we hold, or ``None``."""
        manifest = self.manifest(blob_id)
        if manifest is None:
            return None
        held = self._have.get(blob_id)
        if held is None:
            self.have(blob_id)  # scans once, then cached
            held = self._have[blob_id]
        if index not in held:
            return None
        try:
            fd = os.open(self._data_file(blob_id), os.O_RDONLY)
            try:
                return os.pread(fd, manifest.cipher_len(index), index * _SLOT)
            finally:
                os.close(fd)
        except OSError:  # deleted meanwhile (gc): we no longer hold it
            self._have.pop(blob_id, None)
            return None

    def held_bytes(self, blob_id: bytes) -> int:
        manifest = self.manifest(blob_id)
        if manifest is None:
            return 0
        return sum(manifest.cipher_len(i) for i in self.have(blob_id))

    # -- index ------------------------------------------------------------------------

    def hold(
        self,
        blob_id: bytes,
        *,
        reason: str,
        now: int,
        keep_until: int | None = None,
        owner: str | None = None,
        size: int = 0,
        quota: int | None = None,
        total_quota: int | None = None,
    ) -> None:
        """Record why we hold ``blob_id`` (a stronger reason replaces a weaker one:
        ``own`` > ``received`` > ``cache`` > ``mailbox``). With ``quota`` (mailbox role),
        refuse with :class:`QuotaExceededError` when ``owner``'s blobs would exceed it;
        with ``total_quota``, when all blobs held for others would."""
        if reason not in HOLD_REASONS:
            raise ValueError(f"unknown hold reason {reason!r}")
        if total_quota is not None:
            (used,) = self._sql(
                "SELECT COALESCE(SUM(size), 0) FROM blobs WHERE reason = 'mailbox' AND id != ?",
                (blob_id,),
            ).fetchone()
            if used + size > total_quota:
                raise QuotaExceededError(
                    "total", f"holding this blob would exceed the mailbox's {total_quota:,} bytes"
                )
        if quota is not None:
            (used,) = self._sql(
                "SELECT COALESCE(SUM(size), 0) FROM blobs WHERE owner = ? AND id != ?",
                (owner, blob_id),
            ).fetchone()
            if used + size > quota:
                raise QuotaExceededError(
                    "sender", f"holding this blob would exceed the {quota:,}-byte quota of its peer"
                )
        row = self._sql("SELECT reason FROM blobs WHERE id = ?", (blob_id,)).fetchone()
        if row is None:
            self._sql(
                "INSERT INTO blobs (id, reason, size, created, last_used, keep_until, owner)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (blob_id, reason, size, now, now, keep_until, owner),
            )
            return
        rank = HOLD_REASONS.index
        if rank(reason) <= rank(row[0]):
            self._sql(
                "UPDATE blobs SET reason = ?, keep_until = ?, last_used = ?,"
                " size = MAX(size, ?) WHERE id = ?",
                (reason, keep_until, now, size, blob_id),
            )

    def remember(
        self, ref: MediaRef, *, sources: tuple[str, ...] = (), now: int, reason: str = "received"
    ) -> None:
        """Remember how to open a blob (its ``media-ref``, key included, sealed at rest)
        and which peers may hold it (merged with what we knew); a new row is held for
        ``reason``."""
        known = self.get(ref.hash)
        merged = tuple(dict.fromkeys((*(known.sources if known else ()), *sources)))[:32]
        private = self._rest.seal(
            "blob-ref",
            _encode_private(ref, merged),
        )
        if known is None:
            self._sql(
                "INSERT INTO blobs (id, reason, size, created, last_used, private)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (ref.hash, reason, ref.size, now, now, private),
            )
        else:
            self._sql("UPDATE blobs SET private = ? WHERE id = ?", (private, ref.hash))

    def touch(self, blob_id: bytes, now: int) -> None:
        self._sql("UPDATE blobs SET last_used = ? WHERE id = ?", (now, blob_id))

    def get(self, blob_id: bytes) -> BlobInfo | None:
        row = self._sql(
            "SELECT id, reason, size, created, last_used, keep_until, owner, private"
            " FROM blobs WHERE id = ?",
            (blob_id,),
        ).fetchone()
        return None if row is None else self._info(row)

    def find(self, prefix: str) -> BlobInfo:
        """The blob whose id starts with the hex ``prefix`` (at least 8 digits)."""
        prefix = prefix.lower()
        if len(prefix) < 8 or any(c not in "0123456789abcdef" for c in prefix):
            raise NotFoundError("a file id is at least 8 hexadecimal digits")
        matches = [info for info in self.list() if info.blob_id.hex().startswith(prefix)]
        if not matches:
            raise NotFoundError(f"no file {prefix} is known here")
        if len(matches) > 1:
            raise NotFoundError(f"{prefix} names several files: give more digits")
        return matches[0]

    def list(self) -> list[BlobInfo]:
        rows = self._sql(
            "SELECT id, reason, size, created, last_used, keep_until, owner, private"
            " FROM blobs ORDER BY created DESC"
        ).fetchall()
        return [self._info(row) for row in rows]

    def _info(self, row: tuple[object, ...]) -> BlobInfo:
        blob_id, reason, size, created, last_used, keep_until, owner, private = row
        assert isinstance(blob_id, bytes)
        ref: MediaRef | None = None
        sources: tuple[str, ...] = ()
        if isinstance(private, bytes):
            ref, sources = _decode_private(self._rest.open("blob-ref", private))
        manifest = self.manifest(blob_id)
        return BlobInfo(
            blob_id=blob_id,
            reason=str(reason),
            size=int(size),  # type: ignore[call-overload]
            created=int(created),  # type: ignore[call-overload]
            last_used=int(last_used),  # type: ignore[call-overload]
            keep_until=None if keep_until is None else int(keep_until),  # type: ignore[call-overload]
            owner=None if owner is None else str(owner),
            complete=manifest is not None and len(self.have(blob_id)) == manifest.chunks,
            held_bytes=self.held_bytes(blob_id),
            ref=ref,
            sources=sources,
        )

    # -- attachments a mailbox should hold --------------------------------------------

    def add_mailbox_pending(self, conversation: str, blob_ids: Iterable[bytes]) -> None:
        for blob_id in blob_ids:
            self._sql(
                "INSERT OR IGNORE INTO mailbox_pending (conversation, id) VALUES (?, ?)",
                (conversation, blob_id),
            )

    def drop_mailbox_pending(self, conversation: str, blob_ids: Iterable[bytes]) -> None:
        for blob_id in blob_ids:
            self._sql(
                "DELETE FROM mailbox_pending WHERE conversation = ? AND id = ?",
                (conversation, blob_id),
            )

    def mailbox_pending(self) -> tuple[tuple[str, bytes], ...]:
        """(conversation, blob id) of every pending attachment, oldest first."""
        rows = self._sql("SELECT conversation, id FROM mailbox_pending ORDER BY rowid").fetchall()
        return tuple((str(conversation), bytes(blob_id)) for conversation, blob_id in rows)

    # -- retention --------------------------------------------------------------------

    def delete(self, blob_id: bytes) -> None:
        for ext in ("dat", "man"):
            with contextlib.suppress(FileNotFoundError):
                self._path(blob_id, ext).unlink()
        self._have.pop(blob_id, None)
        self._manifests.pop(blob_id, None)
        self._data_files.pop(blob_id, None)
        self._sql("DELETE FROM blobs WHERE id = ?", (blob_id,))
        self._sql("DELETE FROM mailbox_pending WHERE id = ?", (blob_id,))

    def gc(
        self, now: int, *, own_keep_ms: int, received_keep_ms: int, cache_bytes: int
    ) -> tuple[int, int]:
        """Delete what retention no longer covers; returns (blobs, bytes) freed.

        ``own``: ``keep_until`` (sending time + ``own_keep_ms``) passed; ``received``:
        unused for ``received_keep_ms``; ``mailbox``: ``keep_until`` passed; ``cache``:
        least recently used first while the cache holds more than ``cache_bytes``.
        """
        doomed: list[bytes] = []
        cache: list[tuple[int, bytes, int]] = []
        for info in self.list():
            if info.reason in ("own", "mailbox"):
                limit = (
                    info.keep_until if info.keep_until is not None else info.created + own_keep_ms
                )
                if now >= limit:
                    doomed.append(info.blob_id)
            elif info.reason == "received":
                if now >= info.last_used + received_keep_ms:
                    doomed.append(info.blob_id)
            else:
                cache.append((info.last_used, info.blob_id, info.held_bytes))
        total = sum(size for _, _, size in cache)
        for _, blob_id, size in sorted(cache):
            if total <= cache_bytes:
                break
            doomed.append(blob_id)
            total -= size
        freed = 0
        for blob_id in doomed:
            freed += self.held_bytes(blob_id)
            self.delete(blob_id)
        return len(doomed), freed

    def usage(self) -> dict[str, int]:
        """Bytes held per reason."""
        out = dict.fromkeys(HOLD_REASONS, 0)
        for info in self.list():
            out[info.reason] = out.get(info.reason, 0) + info.held_bytes
        return out


def _encode_private(ref: MediaRef, sources: tuple[str, ...]) -> bytes:
    return cbor.encode({"ref": ref.to_bytes(), "src": list(sources)})


def _decode_private(data: bytes) -> tuple[MediaRef, tuple[str, ...]]:
    try:
        value = cbor.decode(data, max_size=1 << 20)
        if isinstance(value, dict):
            ref_bytes, src = value.get("ref"), value.get("src")
            if isinstance(ref_bytes, bytes) and isinstance(src, list):
                ref = MediaRef.from_bytes(ref_bytes, max_size=len(ref_bytes))
                return ref, tuple(str(s) for s in src)
    except (DecodeError, WireError) as exc:
        raise StorageError("a blob index row is damaged") from exc
    raise StorageError("a blob index row is damaged")

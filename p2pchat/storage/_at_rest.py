"""Sealing of private columns at rest (used by :class:`~p2pchat.storage.sqlite.SqliteStore`).

With a key (the node passes its keystore's ``local_key``), every value that says what
people wrote or who they are is stored as a sealed pickle (XChaCha20-Poly1305, the column
name as associated data, so a value cannot be moved to another column): message bodies,
group event bytes, DHT record values, and one ``private`` blob per contact, group and
peer row holding their names, tags and the group genesis. Keys, ids, states, times and
counts stay in the clear so the store can index and page them; README ("What a copied
home reveals") lists them.

Without a key (tests, benchmarks, tools) values are stored as they are. A store once
sealed refuses to open without its key rather than return ciphertext as data.
"""

from __future__ import annotations

import os

from p2pchat.errors import StorageError
from p2pchat_crypto import cbor, sealed
from p2pchat_crypto.errors import CryptoError

__all__ = ["AtRest", "SEALED_META", "SEALED_MARK"]

#: ``meta`` key recording that the store's private columns are sealed.
SEALED_META = "at-rest"
SEALED_MARK = b"sealed-v1"
_KIND = "p2pchat/at-rest/"


class AtRest:
    """Seals and opens column values; a no-op without a key."""

    def __init__(self, key: bytes | None) -> None:
        if key is not None and len(key) != 32:
            raise ValueError("an at-rest key is 32 bytes")
        self._key = key

    def __repr__(self) -> str:
        return f"AtRest(sealed={self.sealing})"

    @property
    def sealing(self) -> bool:
        return self._key is not None

    def seal(self, column: str, value: bytes) -> bytes:
        if self._key is None:
            return value
        kind = _KIND + column
        return sealed.seal(sealed.pack(kind, 1, value), self._key, os.urandom)

    def open(self, column: str, blob: bytes) -> bytes:
        if self._key is None:
            return blob
        kind = _KIND + column
        try:
            version, body = sealed.unpack(sealed.unseal(blob, self._key, kind), kind)
        except CryptoError:
            raise StorageError(f"a sealed {column} value cannot be opened") from None
        if version != 1 or not isinstance(body, bytes):
            raise StorageError(f"a sealed {column} value is malformed")
        return body

    def seal_fields(self, column: str, fields: dict[str, cbor.Value]) -> bytes:
        """Seal several values of one row as one CBOR map (the ``private`` column)."""
        return self.seal(column, cbor.encode(fields))

    def open_fields(self, column: str, blob: bytes) -> dict[str, object]:
        if self._key is None:
            raise StorageError("this store is sealed at rest: open it with its key")
        try:
            value = cbor.decode(self.open(column, blob), max_size=sealed.MAX_PICKLE_SIZE)
        except CryptoError:
            raise StorageError(f"a sealed {column} value is malformed") from None
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise StorageError(f"a sealed {column} value is malformed")
        return value

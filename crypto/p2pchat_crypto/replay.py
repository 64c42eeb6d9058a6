"""The replay cache for initial (X3DH) messages.

Prekey bundles have no one-time prekeys (the DHT cannot hand each one out exactly once),
so nothing in the key agreement itself stops an attacker from replaying a recorded
initial message: the responder would derive the same keys and accept it again. The cache
remembers every accepted ``(ephemeral key, prekey id)`` pair until the signed prekey
expires; after that the prekey secret is deleted and a replay cannot be decrypted anyway
(X3DH specification, sections 4.2 and 4.3).

The cache fails closed: when it is full, new initial messages are refused rather than
forgetting entries early (forgetting would re-open the replay window).
"""

from __future__ import annotations

from . import sealed
from ._keys import KEY_LEN
from .errors import PickleError, ReplayError

__all__ = ["ReplayCache", "REPLAY_CACHE_PICKLE_KIND", "DEFAULT_MAX_ENTRIES"]

REPLAY_CACHE_PICKLE_KIND = "p2pchat/replay-cache"
DEFAULT_MAX_ENTRIES = 100_000


class ReplayCache:
    """Accepted ``(ephemeral_key, prekey_id)`` pairs, each kept until its prekey expires."""

    __slots__ = ("_entries", "_max_entries")

    def __init__(self, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self._entries: dict[tuple[bytes, int], int] = {}
        self._max_entries = max_entries

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def check(self, ephemeral_key: bytes, prekey_id: int) -> None:
        """Raise :class:`ReplayError` if this pair was accepted before or the cache is full."""
        if (ephemeral_key, prekey_id) in self._entries:
            raise ReplayError("initial message already accepted")
        if len(self._entries) >= self._max_entries:
            raise ReplayError("replay cache is full; refusing new initial messages")

    def add(self, ephemeral_key: bytes, prekey_id: int, *, expires: int) -> None:
        """Remember an accepted pair until ``expires`` (the prekey's expiry, in ms)."""
        self.check(ephemeral_key, prekey_id)
        self._entries[(bytes(ephemeral_key), prekey_id)] = expires

    def prune(self, *, now: int) -> int:
        """Forget entries whose prekey has expired at ``now``; return how many went."""
        stale = [key for key, expires in self._entries.items() if expires <= now]
        for key in stale:
            del self._entries[key]
        return len(stale)

    def to_bytes(self) -> bytes:
        """Versioned pickle: ``[max_entries, [[ephemeral_key, prekey_id, expires], ...]]``."""
        rows = [[key, prekey_id, expires] for (key, prekey_id), expires in self._entries.items()]
        return sealed.pack(REPLAY_CACHE_PICKLE_KIND, 1, [self._max_entries, rows])

    @classmethod
    def from_bytes(cls, data: bytes) -> ReplayCache:
        version, body = sealed.unpack(data, REPLAY_CACHE_PICKLE_KIND)
        if version != 1:
            raise PickleError(f"unknown replay-cache pickle version {version}")
        if not isinstance(body, list) or len(body) != 2 or not isinstance(body[1], list):
            raise PickleError("malformed replay-cache pickle")
        max_entries, rows = body
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise PickleError("malformed replay-cache pickle")
        cache = cls(max_entries=max_entries)
        for row in rows:
            if not (
                isinstance(row, list)
                and len(row) == 3
                and isinstance(row[0], bytes)
                and len(row[0]) == KEY_LEN
                and all(isinstance(v, int) and not isinstance(v, bool) for v in row[1:])
            ):
                raise PickleError("malformed replay-cache entry")
            cache._entries[(row[0], row[1])] = row[2]
        return cache

    def __repr__(self) -> str:
        return f"ReplayCache(entries={len(self._entries)}, max_entries={self._max_entries})"

"""Open Double Ratchet sessions kept in memory between messages.

Opening a session means unsealing and decoding its pickle, and storing it means the
reverse: together about half a millisecond per message, paid on both sides
(bench/dm_bench.py). The cache keeps the session *objects* whose state is exactly
the committed one, so the next message starts from the object instead of the store.

The rule that keeps it honest: an object may be mutated (encrypt, decrypt) only by a
caller that then either commits it and calls :meth:`SessionCache.stored`, or calls
:meth:`SessionCache.forget` — a session must never be ahead of its stored state in
the cache, or a rollback (or a crash-free failure) would resurrect keys that were
never persisted. Callers serialise per account (the DM driver's account locks).
"""

from __future__ import annotations

from p2pchat_crypto.ratchet import Session

__all__ = ["SessionCache", "SessionKey"]

#: ``(account, device, session id)``, as the store keys sessions.
SessionKey = tuple[bytes, bytes, bytes]


class SessionCache:
    """Sessions by key, and each account's most recently stored one.

    ``latest(account)`` is what ``store.list_sessions(account)[0]`` returns (the most
    recently updated session), known once this process stored a session of the
    account. Bounded: past ``capacity`` sessions the least recently stored is
    dropped (it is read from the store again when needed).
    """

    def __init__(self, *, capacity: int = 1024) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._capacity = capacity
        self._sessions: dict[SessionKey, Session] = {}
        self._latest: dict[bytes, SessionKey] = {}

    def __repr__(self) -> str:
        return f"<SessionCache {len(self._sessions)} sessions>"

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, key: SessionKey) -> Session | None:
        return self._sessions.get(key)

    def latest(self, account: bytes) -> tuple[SessionKey, Session] | None:
        key = self._latest.get(account)
        if key is None:
            return None
        session = self._sessions.get(key)
        return None if session is None else (key, session)

    def stored(self, key: SessionKey, session: Session) -> None:
        """``session`` was just committed under ``key``: cache it as its account's latest."""
        self._sessions.pop(key, None)
        self._sessions[key] = session
        self._latest[key[0]] = key
        while len(self._sessions) > self._capacity:
            oldest = next(iter(self._sessions))
            self.forget(oldest)

    def forget(self, key: SessionKey) -> None:
        """Drop ``key`` (its object may be ahead of the store, or it was evicted)."""
        self._sessions.pop(key, None)
        if self._latest.get(key[0]) == key:
            del self._latest[key[0]]

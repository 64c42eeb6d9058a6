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

:class:`ReceiveBatch` is the working set of one inbound batch: the sessions it advanced
(in their latest state) and the messages it decrypted, until the batch commits.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import trio

from p2pchat_crypto.ratchet import Session

from ..protocol.dm_messages import DmPlaintext

__all__ = ["Inbound", "ReceiveBatch", "SessionCache", "SessionKey"]

#: ``(account, device, session id)``, as the store keys sessions.
SessionKey = tuple[bytes, bytes, bytes]


class SessionCache:
    """Sessions by key, and each device's most recently stored one.

    ``latest(account, device)`` is what ``store.list_sessions(account, device=device)[0]``
    returns (the most recently updated session), known once this process stored a
    session with the device. Bounded: past ``capacity`` sessions the least recently stored is
    dropped (it is read from the store again when needed).
    """

    def __init__(self, *, capacity: int = 1024) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._capacity = capacity
        self._sessions: dict[SessionKey, Session] = {}
        self._latest: dict[tuple[bytes, bytes], SessionKey] = {}

    def __repr__(self) -> str:
        return f"<SessionCache {len(self._sessions)} sessions>"

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, key: SessionKey) -> Session | None:
        return self._sessions.get(key)

    def latest(self, account: bytes, device: bytes) -> tuple[SessionKey, Session] | None:
        key = self._latest.get((account, device))
        if key is None:
            return None
        session = self._sessions.get(key)
        return None if session is None else (key, session)

    def stored(self, key: SessionKey, session: Session) -> None:
        """``session`` was just committed under ``key``: cache it as its device's latest."""
        self._sessions.pop(key, None)
        self._sessions[key] = session
        self._latest[key[:2]] = key
        while len(self._sessions) > self._capacity:
            oldest = next(iter(self._sessions))
            self.forget(oldest)

    def forget(self, key: SessionKey) -> None:
        """Drop ``key`` (its object may be ahead of the store, or it was evicted)."""
        self._sessions.pop(key, None)
        if self._latest.get(key[:2]) == key:
            del self._latest[key[:2]]

    def forget_device(self, account: bytes, device: bytes) -> None:
        """Drop every session with ``device`` (it was revoked)."""
        for key in [k for k in self._sessions if k[:2] == (account, device)]:
            self.forget(key)


@dataclasses.dataclass(frozen=True, slots=True)
class Inbound:
    """A decrypted message of a batch, waiting for the batch's commit."""

    account: bytes
    device: bytes
    plain: DmPlaintext


class ReceiveBatch:
    """What one inbound batch decrypted and will commit together (see ``_receive_batch``).

    ``sessions`` holds the sessions the batch advanced, in their latest state, in the
    order they were last used (so the most recent comes last): a message decrypted
    later in the batch must see the state the earlier ones left.
    """

    def __init__(self) -> None:
        self.messages: list[Inbound] = []
        self.keys: list[SessionKey] = []
        self.sessions: dict[SessionKey, Session] = {}
        self.device_accounts: dict[bytes, bytes] = {}
        self.ids: set[bytes] = set()
        self.ack_ids: list[bytes] = []
        self.refused: defaultdict[str, list[bytes]] = defaultdict(list)  # reason -> ids
        self.not_blocked: set[bytes] = set()
        self.replay_changed = False
        self._held: list[trio.Lock] = []

    async def lock(self, lock: trio.Lock) -> None:
        """Hold ``lock`` until :meth:`release` (taken once however often asked)."""
        if lock not in self._held:
            await lock.acquire()
            self._held.append(lock)

    def release(self) -> None:
        held, self._held = self._held, []
        for lock in reversed(held):
            lock.release()

    def add(self, key: SessionKey, session: Session, inbound: Inbound) -> None:
        self.sessions.pop(key, None)
        self.sessions[key] = session
        self.device_accounts[inbound.device] = inbound.account
        self.messages.append(inbound)
        self.keys.append(key)
        self.ids.add(inbound.plain.id)

    def refuse(
        self,
        key: SessionKey,
        session: Session,
        account: bytes,
        device: bytes,
        message_id: bytes,
        reason: str,
    ) -> None:
        """A message decrypted but refused: its session advance is committed, its id
        is answered with a ``dm.refuse``."""
        self.sessions.pop(key, None)
        self.sessions[key] = session
        self.device_accounts[device] = account
        self.ids.add(message_id)
        self.refused[reason].append(message_id)

    def sessions_of(self, account: bytes, device: bytes) -> list[Session]:
        """This batch's sessions with ``device``, most recently used first."""
        return [
            session
            for (acct, dev, _), session in reversed(self.sessions.items())
            if acct == account and dev == device
        ]

    def discard(self, key: SessionKey) -> None:
        """Forget a session and every message decrypted with it (none is acknowledged)."""
        self.sessions.pop(key, None)
        kept = [(k, m) for k, m in zip(self.keys, self.messages, strict=True) if k != key]
        self.keys = [k for k, _ in kept]
        self.messages = [m for _, m in kept]
        self.ids = {m.plain.id for m in self.messages}

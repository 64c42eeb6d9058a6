"""The per-device container of sender keys, keyed by (group, epoch, sender).

The node drives epochs; the keyring enforces what follows from them:

* one outbound session per group, and only ever a newer epoch replaces it (we never send
  with an old epoch's key again);
* one inbound session per (group, epoch, sender): the first distribution wins, because a
  second one for the same key could reset replay protection;
* old epochs are *retired* with a deadline (``now + grace_ms``) so messages still in flight
  decrypt, then :meth:`GroupKeyring.expire` forgets them; a forgotten epoch never comes back
  (a late distribution for it is refused with StaleError).

Time is passed in (``now``: integer milliseconds since the Unix epoch); nothing here reads
a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import group_wire as wire
from .errors import DecodeError, PickleError, StaleError, UnknownSessionError, VerificationError
from .group_session import (
    DEFAULT_LIMITS,
    GroupLimits,
    GroupMessageHeader,
    GroupSession,
    InboundGroupSession,
)
from .sealed import Rng, pack, seal, unpack, unseal

__all__ = ["GroupKeyring", "ReceivedGroupMessage", "KEYRING_PICKLE_KIND", "DEFAULT_GRACE_MS"]

KEYRING_PICKLE_KIND = "p2pchat/group-keyring"
_PICKLE_VERSION = 1
#: How long an old epoch's inbound keys stay usable after a newer epoch started (1 day).
DEFAULT_GRACE_MS = 24 * 60 * 60 * 1000

SessionId = tuple[bytes, int, bytes]


@dataclass(frozen=True, slots=True)
class ReceivedGroupMessage:
    """A decrypted group message and its authenticated header."""

    header: GroupMessageHeader
    plaintext: bytes = field(repr=False)


class GroupKeyring:
    """Outbound and inbound sender keys of one device, with epoch retirement."""

    __slots__ = ("_floors", "_grace_ms", "_inbound", "_limits", "_outbound", "_retiring")

    def __init__(
        self, *, grace_ms: int = DEFAULT_GRACE_MS, limits: GroupLimits = DEFAULT_LIMITS
    ) -> None:
        if grace_ms < 0:
            raise ValueError("grace_ms must not be negative")
        self._grace_ms = grace_ms
        self._limits = limits
        self._outbound: dict[bytes, GroupSession] = {}
        self._inbound: dict[SessionId, InboundGroupSession] = {}
        # group -> list of (epochs below this are retiring, deadline in ms)
        self._retiring: dict[bytes, list[tuple[int, int]]] = {}
        # group -> every epoch below this was forgotten for good
        self._floors: dict[bytes, int] = {}

    # -- outbound ---------------------------------------------------------------------

    def set_outbound(self, session: GroupSession) -> None:
        """Make ``session`` this device's sender key for its group (ValueError if it is not
        of a newer epoch than the current one: two keys for one epoch confuse receivers)."""
        current = self._outbound.get(session.group_id)
        if current is not None and session.epoch <= current.epoch:
            raise ValueError("a group's outbound session can only move to a newer epoch")
        if session.epoch < self._floors.get(session.group_id, 0):
            raise ValueError("that epoch was already forgotten")
        self._outbound[session.group_id] = session

    def outbound(self, group_id: bytes) -> GroupSession | None:
        return self._outbound.get(group_id)

    # -- inbound ----------------------------------------------------------------------

    def add_inbound(self, session: InboundGroupSession) -> bool:
        """Store a received sender key; False if one for the same key is already held.

        StaleError if its epoch was already forgotten; VerificationError if a *different*
        signing key is already held for the same (group, epoch, sender).
        """
        if session.epoch < self._floors.get(session.group_id, 0):
            raise StaleError("sender key for an epoch that was already forgotten")
        existing = self._inbound.get(session.session_id)
        if existing is not None:
            if existing.signing_public_key != session.signing_public_key:
                raise VerificationError("a different sender key is held for this epoch")
            return False
        self._inbound[session.session_id] = session
        return True

    def inbound(self, group_id: bytes, epoch: int, sender: bytes) -> InboundGroupSession | None:
        return self._inbound.get((group_id, epoch, sender))

    def decrypt(self, message: bytes) -> ReceivedGroupMessage:
        """Route a group message to its inbound session and decrypt it.

        UnknownSessionError when no sender key for (group, epoch, sender) is held (never
        received, or its epoch was forgotten); otherwise as InboundGroupSession.decrypt.
        """
        parsed = wire.decode_message(message)
        session = self._inbound.get((parsed.group_id, parsed.epoch, parsed.sender))
        if session is None:
            raise UnknownSessionError("no sender key for this group, epoch and sender")
        plaintext, index = session._decrypt_parsed(parsed)
        header = GroupMessageHeader(parsed.group_id, parsed.epoch, parsed.sender, index)
        return ReceivedGroupMessage(header, plaintext)

    # -- epochs -----------------------------------------------------------------------

    def retire_epochs_before(self, group_id: bytes, epoch: int, *, now: int) -> None:
        """The group moved to ``epoch`` at ``now``: drop our outbound key of any older
        epoch at once, and keep older inbound keys until ``now + grace_ms``."""
        current = self._outbound.get(group_id)
        if current is not None and current.epoch < epoch:
            del self._outbound[group_id]
        deadline = now + self._grace_ms
        if epoch <= self._floors.get(group_id, 0):
            return
        entries = self._retiring.setdefault(group_id, [])
        if not any(e >= epoch and d <= deadline for e, d in entries):
            entries.append((epoch, deadline))

    def forget_epochs_before(self, group_id: bytes, epoch: int) -> int:
        """Forget every key of ``group_id`` older than ``epoch`` now; return how many."""
        if epoch <= self._floors.get(group_id, 0):
            return 0
        self._floors[group_id] = epoch
        retiring = [(e, d) for e, d in self._retiring.get(group_id, []) if e > epoch]
        if retiring:
            self._retiring[group_id] = retiring
        else:
            self._retiring.pop(group_id, None)
        doomed = [sid for sid in self._inbound if sid[0] == group_id and sid[1] < epoch]
        for sid in doomed:
            del self._inbound[sid]
        current = self._outbound.get(group_id)
        if current is not None and current.epoch < epoch:
            del self._outbound[group_id]
            return len(doomed) + 1
        return len(doomed)

    def expire(self, *, now: int) -> int:
        """Forget the epochs whose grace period ended at or before ``now``; return how many
        sessions went."""
        forgotten = 0
        for group_id in list(self._retiring):
            due = [e for e, deadline in self._retiring[group_id] if deadline <= now]
            if due:
                forgotten += self.forget_epochs_before(group_id, max(due))
        return forgotten

    def forget_group(self, group_id: bytes) -> None:
        """Drop every key of a group we left (its floors go too: rejoining starts afresh)."""
        self._outbound.pop(group_id, None)
        self._retiring.pop(group_id, None)
        self._floors.pop(group_id, None)
        for sid in [sid for sid in self._inbound if sid[0] == group_id]:
            del self._inbound[sid]

    def statistics(self) -> dict[str, int]:
        return {
            "outbound": len(self._outbound),
            "inbound": len(self._inbound),
            "retiring": sum(len(r) for r in self._retiring.values()),
        }

    # -- pickles ----------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """``["p2pchat/group-keyring", 1, [outbound, inbound, retiring, floors]]``, each list
        sorted: embedded session pickles as byte strings, ``[group, epoch, deadline]``,
        ``[group, floor]``."""
        return pack(
            KEYRING_PICKLE_KIND,
            _PICKLE_VERSION,
            [
                [self._outbound[g].to_bytes() for g in sorted(self._outbound)],
                [self._inbound[sid].to_bytes() for sid in sorted(self._inbound)],
                sorted([g, e, d] for g, entries in self._retiring.items() for e, d in entries),
                sorted([g, f] for g, f in self._floors.items()),
            ],
        )

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        grace_ms: int = DEFAULT_GRACE_MS,
        limits: GroupLimits = DEFAULT_LIMITS,
    ) -> GroupKeyring:
        version, body = unpack(data, KEYRING_PICKLE_KIND)
        if version != _PICKLE_VERSION:
            raise PickleError(f"unknown group-keyring pickle version {version}")
        if (
            not isinstance(body, list)
            or len(body) != 4
            or not all(isinstance(part, list) for part in body)
        ):
            raise PickleError("malformed group-keyring pickle")
        keyring = cls(grace_ms=grace_ms, limits=limits)
        try:
            keyring._load(body, limits)
        except DecodeError as exc:
            raise PickleError(f"malformed group-keyring pickle ({exc.reason})") from None
        return keyring

    def _load(self, body: list[Any], limits: GroupLimits) -> None:
        outbound_pickles, inbound_pickles, retiring, floors = body
        for item in outbound_pickles:
            session = GroupSession.from_bytes(_pickle_bytes(item))
            if session.group_id in self._outbound:
                raise PickleError("two outbound sessions for one group")
            self._outbound[session.group_id] = session
        for item in inbound_pickles:
            inbound = InboundGroupSession.from_bytes(_pickle_bytes(item), limits=limits)
            if inbound.session_id in self._inbound:
                raise PickleError("two inbound sessions for one sender key")
            self._inbound[inbound.session_id] = inbound
        for entry in retiring:
            if not isinstance(entry, list) or len(entry) != 3:
                raise PickleError("malformed retirement in group-keyring pickle")
            group_id = wire.check_group_id(entry[0])
            epoch = wire.check_uint(entry[1], "epoch")
            self._retiring.setdefault(group_id, []).append(
                (epoch, wire.check_uint(entry[2], "deadline"))
            )
        for entry in floors:
            if not isinstance(entry, list) or len(entry) != 2:
                raise PickleError("malformed floor in group-keyring pickle")
            self._floors[wire.check_group_id(entry[0])] = wire.check_uint(entry[1], "epoch")

    def to_sealed(self, key: bytes, rng: Rng) -> bytes:
        return seal(self.to_bytes(), key, rng)

    @classmethod
    def from_sealed(
        cls,
        blob: bytes,
        key: bytes,
        *,
        grace_ms: int = DEFAULT_GRACE_MS,
        limits: GroupLimits = DEFAULT_LIMITS,
    ) -> GroupKeyring:
        return cls.from_bytes(
            unseal(blob, key, KEYRING_PICKLE_KIND), grace_ms=grace_ms, limits=limits
        )

    def __repr__(self) -> str:
        stats = self.statistics()
        return (
            f"GroupKeyring(outbound={stats['outbound']}, inbound={stats['inbound']}, "
            f"retiring={stats['retiring']})"
        )


def _pickle_bytes(item: object) -> bytes:
    if not isinstance(item, bytes):
        raise PickleError("malformed group-keyring pickle: session is not a byte string")
    return item

"""What the group engine asks the node to do or show: effects, and receive results.

Effects are plain values. The engine computes them by comparing the membership before
and after each call, so a node can execute them in order without knowing how the state
was reached (incremental fold or replay).
"""

from __future__ import annotations

from dataclasses import dataclass

from .group_live import LiveEntry
from .group_log import ForkProof, StoredEvent

__all__ = [
    "MemberJoined",
    "MemberLeft",
    "RoleChanged",
    "NewEpochNeeded",
    "SenderKeyNeeded",
    "ForkDetected",
    "ForkEvidenceNeeded",
    "SealedReceived",
    "LiveCommentReceived",
    "Effect",
    "ReceiveResult",
]


@dataclass(frozen=True, slots=True)
class MemberJoined:
    account: bytes
    role: str


@dataclass(frozen=True, slots=True)
class MemberLeft:
    """Left, removed or banned (``banned``)."""

    account: bytes
    banned: bool


@dataclass(frozen=True, slots=True)
class RoleChanged:
    account: bytes
    role: str


@dataclass(frozen=True, slots=True)
class NewEpochNeeded:
    """Private groups: create a sender key for ``epoch`` and send it to ``recipients``
    (device keys) over pairwise sessions, then author a ``skey.dist``."""

    epoch: int
    recipients: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SenderKeyNeeded:
    """Private groups: new member devices need our current sender key for ``epoch``."""

    epoch: int
    recipients: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class ForkDetected:
    """A device signed two events at one position: show it, and gossip ``proof``."""

    device: bytes
    seq: int
    proof: ForkProof


@dataclass(frozen=True, slots=True)
class ForkEvidenceNeeded:
    """A device forked against a held event whose bytes are in the store: read them
    and call :meth:`GroupEngine.provide_fork_bytes` (the proof is made then)."""

    event_id: bytes


@dataclass(frozen=True, slots=True)
class SealedReceived:
    """Private groups: decrypt this event and call :meth:`GroupEngine.provide_plaintext`."""

    event_id: bytes


@dataclass(frozen=True, slots=True)
class LiveCommentReceived:
    entry: LiveEntry


Effect = (
    MemberJoined
    | MemberLeft
    | RoleChanged
    | NewEpochNeeded
    | SenderKeyNeeded
    | ForkDetected
    | ForkEvidenceNeeded
    | SealedReceived
    | LiveCommentReceived
)


@dataclass(frozen=True, slots=True)
class ReceiveResult:
    """Events newly accepted (store and relay them), effects, and how many were buffered
    or deferred (not stored, not to be relayed: sync fetches them later)."""

    accepted: tuple[StoredEvent, ...] = ()
    effects: tuple[Effect, ...] = ()
    buffered: int = 0
    #: Valid-looking events left for a later sync: their author is over the ceiling.
    deferred: int = 0

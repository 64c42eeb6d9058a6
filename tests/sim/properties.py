"""The properties a run must satisfy once the network has healed.

* delivery: every post reaches the app (a ``GroupMessage``) of every current member;
* no duplicates: no member's app sees any post twice, over all of its incarnations;
* convergence: every current member has the same membership, roles, epoch and ordered
  history hash, and that membership is exactly the members the simulator expects;
* forward secrecy of departures (private groups): a removed (or departed) member never
  reads a post whose author already knew of its departure.

:func:`converged` is the cheap check polled while waiting; :func:`violations` is the
full check, which explains every failure in words.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from p2pchat.errors import P2PChatError
from p2pchat.protocol.group_state import Membership

from .world import SimPeer

__all__ = ["Expectations", "converged", "violations", "delivery_counts"]


@dataclass
class Expectations:
    """What the simulator did, hence what every replica must show."""

    owner: bytes
    group: bytes = b""
    kind_private: bool = False
    #: Accounts that joined and have not left or been removed.
    members: set[bytes] = field(default_factory=set)
    #: Accounts that left or were removed.
    removed: set[bytes] = field(default_factory=set)
    #: Post event id -> its text, for every post that was authored.
    posts: dict[bytes, str] = field(default_factory=dict)
    #: Departed account -> posts whose author knew of that departure.
    after_removal: dict[bytes, set[bytes]] = field(default_factory=dict)
    #: Post event id -> the members its author knew of when posting. In a private
    #: group only they get its sender key: a member who joined later never reads it.
    recipients: dict[bytes, frozenset[bytes]] = field(default_factory=dict)
    #: Names of peers whose join never succeeded (a run with any is a failure).
    gave_up: list[str] = field(default_factory=list)


def _snapshot(state: Membership) -> tuple[object, ...]:
    return (
        tuple(sorted(state.members.items())),
        tuple(sorted(state.banned.items())),
        tuple(sorted(state.pending)),
        state.epoch,
    )


def _replica(peer: SimPeer, group: bytes) -> tuple[tuple[object, ...], bytes, set[bytes]] | None:
    """(membership snapshot, history hash, event ids) of a running member, else None."""
    node = peer.node
    if node is None:
        return None
    try:
        engine = node._groups.engine(group)
    except P2PChatError:
        return None
    ids = {s.event_id for s in engine.ordered_events()}
    return _snapshot(engine.state), engine.history_hash(), ids


def member_peers(peers: list[SimPeer], expect: Expectations) -> list[SimPeer]:
    return [p for p in peers if p.account in expect.members]


def owed(peer: SimPeer, expect: Expectations) -> list[bytes]:
    """The posts ``peer``'s app must show: all of them in a public group; in a private
    group, those whose author counted ``peer`` as a member (and so sent it the key)."""
    if not expect.kind_private:
        return list(expect.posts)
    return [e for e in expect.posts if peer.account in expect.recipients.get(e, ())]


def converged(peers: list[SimPeer], expect: Expectations) -> bool:
    """Every member holds every post, and all replicas agree (cheap enough to poll)."""
    seen: set[tuple[tuple[object, ...], bytes]] = set()
    posts = set(expect.posts)
    for peer in member_peers(peers, expect):
        replica = _replica(peer, expect.group)
        if replica is None:
            return False
        snapshot, history, ids = replica
        if not posts <= ids or not set(owed(peer, expect)) <= set(peer.deliveries):
            return False
        seen.add((snapshot, history))
        if len(seen) > 1:
            return False
    return True


def delivery_counts(peers: list[SimPeer], expect: Expectations) -> tuple[int, int, int]:
    """(deliveries expected, posts delivered at least once, deliveries beyond the first)."""
    expected = delivered = duplicates = 0
    for peer in member_peers(peers, expect):
        for event_id in owed(peer, expect):
            expected += 1
            count = peer.deliveries[event_id]
            delivered += count > 0
            duplicates += max(0, count - 1)
    return expected, delivered, duplicates


def violations(peers: list[SimPeer], expect: Expectations) -> list[str]:
    """Every property that does not hold, in words (empty: the run passed)."""
    problems = [f"{name} never managed to join" for name in expect.gave_up]
    members = member_peers(peers, expect)
    replicas: dict[str, tuple[tuple[object, ...], bytes, set[bytes]]] = {}
    for peer in members:
        replica = _replica(peer, expect.group)
        if replica is None:
            problems.append(f"{peer.name} is not running as a member at the end")
        else:
            replicas[peer.name] = replica
    for name, (snapshot, _, ids) in replicas.items():
        missing = set(expect.posts) - ids
        if missing:
            problems.append(f"{name} lacks {len(missing)} of {len(expect.posts)} posts")
        accounts = {account for account, _ in snapshot[0]}  # type: ignore[attr-defined]
        if accounts != expect.members:
            problems.append(
                f"{name} sees {len(accounts)} members, expected {len(expect.members)} "
                f"({len(accounts - expect.members)} extra, {len(expect.members - accounts)} "
                "missing)"
            )
    states = {(snapshot, history) for snapshot, history, _ in replicas.values()}
    if len(states) > 1:
        problems.append(f"replicas disagree: {len(states)} distinct membership/history states")
    for peer in members:
        for event_id in owed(peer, expect):
            if peer.deliveries[event_id] == 0:
                problems.append(f"{peer.name}: post {event_id.hex()[:12]} never reached the app")
        for event_id, count in peer.deliveries.items():
            if count > 1:
                problems.append(f"{peer.name}: post {event_id.hex()[:12]} reached the app {count}x")
    for peer in peers:
        if peer.account not in expect.removed:
            continue
        leaked = [e for e in expect.after_removal.get(peer.account, ()) if e in peer.texts]
        if leaked:
            problems.append(f"removed {peer.name} read {len(leaked)} posts of a later epoch")
    return problems

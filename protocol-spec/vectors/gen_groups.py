# ruff: noqa: RUF001 (the tag vectors are non-ASCII on purpose)
"""Group-engine conformance vectors (protocol-spec/vectors/groups/): what a replica must
*show*, not only which bytes it must accept.

    python protocol-spec/vectors/generate.py   # writes groups/*.json (and every other set)

* ``groups/scenarios.json``: each scenario is a genesis, a set of signed events and one
  or more **delivery orders**; a replica that receives the events in any listed order
  (each event on its own, as from gossip, ``now`` = the scenario's ``now``; an event
  whose ancestors are missing waits, groups.md §2) must end in the ``expect``-ed state:
  accepted events in the total order, the effective ones, membership, roles, bans,
  pending accounts, epoch, forked devices, the ordered-history hash and the content view.
  ``refused`` gives the refusal reason of each refused event when delivered in the
  *first* order; in other orders the same events are not accepted, though one that
  waited for its ancestors may be dropped silently instead. ``plaintexts`` (private groups)
  are handed to the replica after delivery, as if it had decrypted those ``sealed``
  events (groups.md §7). How to run them: implementing.md, "Running the vectors".
* ``groups/invites.json``: invite -> join pairs (secret, ``inv``, token text, the two
  events), so the invite hash of groups.md §5 is settled by data.
* ``groups/tags.json``: topic-tag folding (wire.md §10.1), ASCII and not.

The generator builds each scenario with the reference engine (actors author on their
own replicas, so concurrent events really are concurrent), computes the expected state
by replaying the first order, and refuses to write anything unless every other order
gives the same state.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from p2pchat.errors import WireError
from p2pchat.protocol.codec import Struct
from p2pchat.protocol.content import Content, MediaRef
from p2pchat.protocol.group_engine import GroupEngine
from p2pchat.protocol.group_events import (
    Delete,
    DeviceRevoke,
    Edit,
    GroupBuy,
    GroupBuyJoin,
    GroupDescriptor,
    InnerEvent,
    KeyBox,
    LiveComment,
    MemberAdd,
    MemberBan,
    MemberJoin,
    MemberLeave,
    MemberRemove,
    Poll,
    Post,
    Reaction,
    Reply,
    RoleChange,
    Rules,
    Sealed,
    SenderKeyDistribution,
    ShareCard,
    Vote,
    decode_event,
    event_id_of,
    sign_event,
)
from p2pchat.protocol.group_invite import new_invite
from p2pchat.protocol.group_log import GroupError
from p2pchat.protocol.group_state import invite_hash
from p2pchat.protocol.records import dht_key, fold_tag, topic_key
from p2pchat.protocol.revocation import Revocation
from p2pchat.protocol.signing import ExternalSigner
from p2pchat_crypto import cbor
from p2pchat_crypto.identity import Account, Device
from p2pchat_crypto.kdf import blake2b

HERE = Path(__file__).resolve().parent
#: 2026-01-01T00:00:00Z: events are authored from here on, one second apart.
T0 = 1_767_225_600_000
#: The receiving replica's clock in every scenario (a day later: nothing is "from the future").
NOW = T0 + 86_400_000
SECOND = 1000
MINUTE = 60 * SECOND


def rng_for(seed: str) -> Callable[[int], bytes]:
    """Deterministic "randomness" (SHA-256 in counter mode): test vectors only."""
    counter = 0

    def rng(n: int) -> bytes:
        nonlocal counter
        out = b""
        while len(out) < n:
            out += hashlib.sha256(f"{seed}/{counter}".encode()).digest()
            counter += 1
        return out[:n]

    return rng


@dataclass
class Actor:
    name: str
    account: Account
    devices: list[Device]

    @classmethod
    def make(cls, name: str, devices: int = 1) -> Actor:
        rng = rng_for(f"actor/{name}")
        account = Account.generate(rng)
        return cls(
            name,
            account,
            [Device.generate(account, rng, now=T0 - 86_400_000) for _ in range(devices)],
        )

    @property
    def key(self) -> bytes:
        return self.account.account_key


NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "gina")


def cast() -> dict[str, Actor]:
    return {n: Actor.make(n, devices=2 if n in ("alice", "bob") else 1) for n in NAMES}


def text(value: str) -> Content:
    return Content(type="p2pchat/text", body={}, text=value)


@dataclass
class Scenario:
    """A group in the making: every actor authors on its own replica."""

    name: str
    about: str
    descriptor: GroupDescriptor
    actors: dict[str, Actor] = field(default_factory=cast)
    events: list[tuple[str, bytes]] = field(default_factory=list)
    plaintexts: dict[str, InnerEvent] = field(default_factory=dict)
    orders: list[list[str]] = field(default_factory=list)
    covers: list[str] = field(default_factory=list)
    clock: int = T0

    def __post_init__(self) -> None:
        owner = self.actors["alice"].devices[0]
        engine, self.genesis = GroupEngine.create(
            self.descriptor, device=owner, now=self.tick(), rng=rng_for(f"genesis/{self.name}")
        )
        self.group = engine.group_id
        self.replicas: dict[str, GroupEngine] = {"alice": engine}
        self.labels: dict[bytes, str] = {self.group: "genesis"}

    def tick(self, seconds: int = 1) -> int:
        self.clock += seconds * SECOND
        return self.clock

    def replica(self, who: str) -> GroupEngine:
        if who not in self.replicas:
            self.replicas[who] = GroupEngine.from_genesis(self.genesis)
        return self.replicas[who]

    def sync(self, *who: str) -> None:
        """Let these actors' replicas catch up with every event authored so far."""
        for name in who or tuple(self.replicas):
            engine = self.replica(name)
            for _, data in self.events:
                with contextlib.suppress(GroupError, WireError):
                    engine.receive(data, now=NOW)

    def add(self, label: str, data: bytes) -> bytes:
        assert label not in self.labels.values(), label
        self.events.append((label, data))
        self.labels[event_id_of(data)] = label
        return data

    def author(
        self,
        who: str,
        label: str,
        body: Struct,
        *,
        device: int = 0,
        at: int | None = None,
        plaintext: InnerEvent | None = None,
        sync: bool = True,
    ) -> bytes:
        """``who`` authors on its replica (synced first unless ``sync`` is False)."""
        if sync:
            self.sync(who)
        engine = self.replica(who)
        data = engine.author(
            body,
            device=self.actors[who].devices[device],
            now=at or self.tick(),
            plaintext=plaintext,
        )
        if plaintext is not None:
            self.plaintexts[label] = plaintext
        return self.add(label, data)

    def craft(
        self,
        who: str,
        label: str,
        body: Struct | dict[str, Any],
        *,
        device: int = 0,
        seq: int,
        prev: bytes | None,
        deps: Iterable[bytes] = (),
        lt: int,
        ts: int,
        group: bytes | None = None,
        cert: bytes | None = None,
        account: bytes | None = None,
        bad_signature: bool = False,
    ) -> bytes:
        """An event built by hand (for the rules an honest author never breaks)."""
        dev = self.actors[who].devices[device]
        if isinstance(body, dict):
            body = _Raw(body)
        data = sign_event(
            body,
            signing_key=SigningKey(dev.signing_seed()),
            account=account or self.actors[who].key,
            group=group or self.group,
            seq=seq,
            prev=prev,
            deps=tuple(deps),
            lamport=lt,
            now=ts,
            cert=cert,
        )
        if bad_signature:
            value = cbor.decode(data, max_size=len(data))
            value["sig"] = bytes([value["sig"][0] ^ 1]) + value["sig"][1:]
            data = cbor.encode(value)
        return self.add(label, data)

    def order(self, *labels: str) -> None:
        assert sorted(labels) == sorted(label for label, _ in self.events), labels
        self.orders.append(list(labels))

    def natural_orders(self, extra: Iterable[list[str]] = ()) -> None:
        """The authoring order, its reverse (everything arrives before its ancestors),
        and an interleaving; plus ``extra``."""
        labels = [label for label, _ in self.events]
        self.orders = [labels, labels[::-1], labels[1::2] + labels[0::2], *extra]


class _Raw(Struct):
    """A body given as a plain map (a kind this version does not know, or a bad body)."""

    KIND = "x.raw"

    def __init__(self, value: dict[str, Any]) -> None:
        object.__setattr__(self, "_value", value)
        object.__setattr__(self, "KIND", value.pop("$kind"))

    def to_value(self) -> dict[str, Any]:
        return dict(self._value)  # type: ignore[attr-defined]


def eid(data: bytes) -> bytes:
    return event_id_of(data)


def ev(data: bytes) -> Any:
    return decode_event(data)


# --- the scenarios -------------------------------------------------------------------


def public_basics() -> Scenario:
    s = Scenario(
        "public-content",
        "An open public group: joins, posts, replies, reactions, edits, deletes, shares, "
        "a poll, a group buy, an unknown kind; permission rules of groups.md §4 and §7.",
        GroupDescriptor(
            kind="public",
            name="Vinyl",
            tags=("vinyl",),
            rules=Rules(join="open", post="member", invite="admin", slow=0),
        ),
        covers=[
            "member.join (open)",
            "post",
            "reply",
            "react",
            "edit",
            "delete",
            "share",
            "poll",
            "vote",
            "buy",
            "buy.join",
            "unknown kind",
            "content by a non-member",
            "edit by another account",
            "delete by a non-moderator",
            "vote rules",
            "reply to an unknown event",
            "reply to a non-message",
        ],
    )
    s.author("bob", "bob-join", MemberJoin())
    s.author("carol", "carol-join", MemberJoin())
    post = s.author("alice", "alice-post", Post(content=text("first pressing, 1971")))
    reply = s.author("bob", "bob-reply", Reply(target=eid(post), content=text("nice!")))
    s.author(
        "carol", "carol-react", Reaction(target=eid(post), emoji="\N{THUMBS UP SIGN}", on=True)
    )
    s.author("bob", "bob-react", Reaction(target=eid(post), emoji="\N{FIRE}", on=True))
    s.author("bob", "bob-unreact", Reaction(target=eid(post), emoji="\N{FIRE}", on=False))
    s.author("alice", "alice-edit", Edit(target=eid(post), content=text("first pressing, 1972")))
    s.author("bob", "bob-edit-alice (void)", Edit(target=eid(post), content=text("mine now")))
    s.author("carol", "carol-delete-bob (void)", Delete(target=eid(reply)))
    s.author("bob", "bob-delete-own", Delete(target=eid(reply), reason="typo"))
    s.author("carol", "carol-share", ShareCard(title="Turntable", url="https://shop.example/tt"))
    s.author("bob", "bob-unknown-kind", _Raw({"$kind": "x.sticker", "id": 7}))
    s.author("dave", "dave-post (void: not a member)", Post(content=text("hi, I never joined")))
    s.author("dave", "dave-unknown-kind (void)", _Raw({"$kind": "x.sticker", "id": 8}))
    poll = s.author(
        "alice",
        "alice-poll",
        Poll(
            question="Next meetup?",
            options=("Sat", "Sun", "Mon"),
            multi=False,
            deadline=T0 + 60 * SECOND,
        ),
    )
    s.author("bob", "bob-vote", Vote(poll=eid(poll), choices=(1,)))
    s.author("carol", "carol-vote-two (void: not multi)", Vote(poll=eid(poll), choices=(0, 1)))
    s.author("carol", "carol-vote-out-of-range (void)", Vote(poll=eid(poll), choices=(3,)))
    s.author("carol", "carol-vote", Vote(poll=eid(poll), choices=(0,)))
    s.author("bob", "bob-revote", Vote(poll=eid(poll), choices=(2,)))
    s.author(
        "carol",
        "carol-vote-late (void: after the deadline)",
        Vote(poll=eid(poll), choices=(2,)),
        at=T0 + 61 * SECOND,
    )
    buy = s.author(
        "alice",
        "alice-buy",
        GroupBuy(title="Sleeves", options=("inner", "outer"), quota=3, deadline=T0 + 10 * MINUTE),
    )
    s.author("bob", "bob-buy-join", GroupBuyJoin(buy=eid(buy), option=1, quantity=2))
    s.author("carol", "carol-buy-join", GroupBuyJoin(buy=eid(buy), option=0, quantity=1))
    s.author(
        "carol", "carol-buy-bad-option (void)", GroupBuyJoin(buy=eid(buy), option=2, quantity=1)
    )
    s.author(
        "bob",
        "bob-reply-unknown (void)",
        Reply(target=blake2b(b"nothing", size=32), content=text("?")),
    )
    s.author(
        "bob", "bob-reply-to-join (void)", Reply(target=eid(s.events[0][1]), content=text("hi"))
    )
    s.author(
        "carol",
        "carol-edit-share (void: only posts and replies)",
        Edit(target=eid(s.events[11][1]), content=text("x")),
    )
    s.natural_orders()
    return s


def invites() -> Scenario:
    s = Scenario(
        "invites",
        "Invite-only group: invite tokens with uses, expiry and a named account, a "
        "duplicate invite hash, an inviter who loses the right to invite, direct adds.",
        GroupDescriptor(
            kind="public",
            name="Jazz",
            tags=(),
            rules=Rules(join="invite", post="member", invite="admin", slow=0),
        ),
        covers=[
            "member.invite",
            "member.join (secret)",
            "uses counted in the total order",
            "expired invite",
            "invite for one account",
            "duplicate inv",
            "inviter lost rank",
            "member.add",
            "add by a non-admin",
            "post below rules.post",
            "join without secret in an invite group",
        ],
    )
    a = s.actors
    rng = rng_for("invites")
    body, token = new_invite(
        rng, group=s.group, inviter=a["alice"].key, role="member", expires=T0 + 10 * MINUTE, uses=2
    )
    s.author("alice", "invite-2-uses", body)
    s.author("bob", "bob-join", MemberJoin(secret=token.secret))
    s.author("carol", "carol-join", MemberJoin(secret=token.secret))
    s.author("dave", "dave-join (void: no uses left)", MemberJoin(secret=token.secret))
    s.author("alice", "invite-2-uses-again (void: same inv)", body)
    expired, expired_token = new_invite(
        rng, group=s.group, inviter=a["alice"].key, role="member", expires=T0 + 20 * SECOND
    )
    s.author("alice", "invite-expiring", expired)
    s.author(
        "erin",
        "erin-join (void: expired)",
        MemberJoin(secret=expired_token.secret),
        at=T0 + 30 * SECOND,
    )
    named, named_token = new_invite(
        rng,
        group=s.group,
        inviter=a["alice"].key,
        role="moderator",
        expires=T0 + 10 * MINUTE,
        account=a["erin"].key,
    )
    s.author("alice", "invite-for-erin", named)
    s.author("dave", "dave-join-erins (void: other account)", MemberJoin(secret=named_token.secret))
    s.author("erin", "erin-join-named", MemberJoin(secret=named_token.secret))
    s.author(
        "bob",
        "bob-add-dave (void: bob is a member)",
        MemberAdd(account=a["dave"].key, role="member"),
    )
    s.author("alice", "alice-add-dave-viewer", MemberAdd(account=a["dave"].key, role="viewer"))
    s.author("dave", "dave-post (void: viewers may not post)", Post(content=text("can I talk?")))
    s.author("alice", "alice-promote-bob", RoleChange(account=a["bob"].key, role="admin"))
    bobs, bobs_token = new_invite(
        rng, group=s.group, inviter=a["bob"].key, role="member", expires=T0 + 10 * MINUTE
    )
    s.author("bob", "bob-invite", bobs)
    s.author("alice", "alice-demote-bob", RoleChange(account=a["bob"].key, role="member"))
    s.author(
        "frank", "frank-join-bobs (void: inviter lost rank)", MemberJoin(secret=bobs_token.secret)
    )
    s.author("gina", "gina-join-no-secret (void)", MemberJoin())
    s.natural_orders()
    s.tokens = {  # type: ignore[attr-defined]
        "invite-2-uses": (token, ["bob-join", "carol-join"], ["dave-join (void: no uses left)"]),
        "invite-expiring": (expired_token, [], ["erin-join (void: expired)"]),
        "invite-for-erin": (
            named_token,
            ["erin-join-named"],
            ["dave-join-erins (void: other account)"],
        ),
        "bob-invite": (bobs_token, [], ["frank-join-bobs (void: inviter lost rank)"]),
    }
    return s


def approval_and_cap() -> Scenario:
    s = Scenario(
        "approval-and-cap",
        "Join by approval (pending until added) and a member cap of 3.",
        GroupDescriptor(
            kind="public",
            name="Quartet",
            tags=(),
            rules=Rules(join="approval", post="member", invite="admin", slow=0, max_members=3),
        ),
        covers=[
            "member.join (approval) -> pending",
            "member.add admits a pending account",
            "member cap",
            "member.leave frees a seat",
            "epoch on leave",
        ],
    )
    a = s.actors
    s.author("bob", "bob-asks", MemberJoin())
    s.author("carol", "carol-asks", MemberJoin())
    s.author("alice", "alice-admits-bob", MemberAdd(account=a["bob"].key, role="member"))
    s.author("alice", "alice-admits-carol", MemberAdd(account=a["carol"].key, role="member"))
    s.author(
        "alice", "alice-adds-dave (void: cap)", MemberAdd(account=a["dave"].key, role="member")
    )
    s.author("carol", "carol-leaves", MemberLeave(reason="busy"))
    s.author("alice", "alice-adds-dave", MemberAdd(account=a["dave"].key, role="member"))
    s.author("carol", "carol-leaves-again (void: not a member)", MemberLeave())
    s.natural_orders()
    return s


def moderation() -> Scenario:
    s = Scenario(
        "roles-and-moderation",
        "Every rule of remove, ban (with and without expiry), role.change and leave.",
        GroupDescriptor(
            kind="public",
            name="Chess",
            tags=(),
            rules=Rules(join="invite", post="member", invite="admin", slow=0),
        ),
        covers=[
            "member.remove",
            "member.ban",
            "ban until",
            "ban of a non-member",
            "rejoin while banned",
            "rejoin after the ban",
            "role.change rules",
            "owners cannot demote owners",
            "stepping down",
            "moderator on a moderator",
            "epoch",
        ],
    )
    a = s.actors
    for name, role in (
        ("bob", "admin"),
        ("carol", "moderator"),
        ("dave", "member"),
        ("erin", "member"),
        ("frank", "moderator"),
    ):
        s.author("alice", f"add-{name}-{role}", MemberAdd(account=a[name].key, role=role))
    s.author("carol", "carol-removes-dave", MemberRemove(account=a["dave"].key, reason="spam"))
    s.author("carol", "carol-removes-bob (void: admin)", MemberRemove(account=a["bob"].key))
    s.author("carol", "carol-removes-frank (void: same rank)", MemberRemove(account=a["frank"].key))
    ban_end = s.clock + 30 * SECOND
    s.author("bob", "bob-bans-erin-30s", MemberBan(account=a["erin"].key, until=ban_end))
    s.author("bob", "bob-bans-gina (not a member)", MemberBan(account=a["gina"].key))
    rng = rng_for("moderation")
    body, token = new_invite(
        rng, group=s.group, inviter=a["alice"].key, role="member", expires=T0 + 10 * MINUTE, uses=3
    )
    s.author("alice", "invite", body)
    s.author(
        "erin",
        "erin-rejoins-early (void: banned)",
        MemberJoin(secret=token.secret),
        at=ban_end - SECOND,
    )
    s.author("gina", "gina-joins (void: banned forever)", MemberJoin(secret=token.secret))
    s.author("erin", "erin-rejoins", MemberJoin(secret=token.secret), at=ban_end, sync=False)
    s.author("bob", "bob-steps-down", RoleChange(account=a["bob"].key, role="moderator"))
    s.author("alice", "alice-promotes-carol", RoleChange(account=a["carol"].key, role="admin"))
    s.author(
        "carol",
        "carol-makes-bob-admin (void: not below her)",
        RoleChange(account=a["bob"].key, role="admin"),
    )
    s.author(
        "alice",
        "alice-adds-gina-owner (void: banned)",
        MemberAdd(account=a["gina"].key, role="owner"),
    )
    s.author("alice", "alice-adds-dave-owner", MemberAdd(account=a["dave"].key, role="owner"))
    s.author(
        "alice",
        "alice-demotes-dave (void: owner)",
        RoleChange(account=a["dave"].key, role="member"),
    )
    s.author("dave", "dave-steps-down", RoleChange(account=a["dave"].key, role="member"))
    s.author("frank", "frank-leaves", MemberLeave())
    s.natural_orders()
    return s


def concurrent_removal() -> Scenario:
    s = Scenario(
        "concurrent-removal",
        "Two admins remove each other concurrently (neither saw the other's event); each "
        "then posts. The removal that sorts first applies; the other admin's removal and "
        "later posts are void. Every delivery order gives the same state.",
        GroupDescriptor(
            kind="public",
            name="Board",
            tags=(),
            rules=Rules(join="invite", post="member", invite="admin", slow=0),
        ),
        covers=["concurrent moderation", "void after losing membership", "total order by (lt, id)"],
    )
    a = s.actors
    s.author("alice", "add-bob-admin", MemberAdd(account=a["bob"].key, role="admin"))
    s.author("alice", "add-carol-admin", MemberAdd(account=a["carol"].key, role="admin"))
    s.sync("bob", "carol")
    s.author("bob", "bob-removes-carol", MemberRemove(account=a["carol"].key), sync=False)
    s.author("carol", "carol-removes-bob", MemberRemove(account=a["bob"].key), sync=False)
    s.author("bob", "bob-post", Post(content=text("bob was here")), sync=False)
    s.author("carol", "carol-post", Post(content=text("carol was here")), sync=False)
    s.author("alice", "alice-post", Post(content=text("what happened?")))
    labels = [label for label, _ in s.events]
    s.natural_orders(
        [
            [
                *labels[:2],
                "carol-removes-bob",
                "carol-post",
                "bob-removes-carol",
                "bob-post",
                "alice-post",
            ]
        ]
    )
    return s


def concurrent_ban_and_posts() -> Scenario:
    s = Scenario(
        "concurrent-ban-and-posts",
        "An admin bans a member while the member, not yet aware, posts three times. Posts "
        "that sort before the ban stay; those after it are void. The member's next event "
        "after seeing the ban sorts after it.",
        GroupDescriptor(
            kind="public",
            name="Forum",
            tags=(),
            rules=Rules(join="open", post="member", invite="admin", slow=0),
        ),
        covers=["ban concurrent with posts", "Lamport order"],
    )
    s.author("bob", "bob-join", MemberJoin())
    s.author("carol", "carol-join", MemberJoin())
    # Bob has not seen Carol's join: his posts start lower in the Lamport order than the ban.
    s.author("alice", "alice-bans-bob", MemberBan(account=s.actors["bob"].key, reason="trolling"))
    for i in range(3):
        s.author("bob", f"bob-post-{i}", Post(content=text(f"post {i}")), sync=False)
    s.author("carol", "carol-post", Post(content=text("hello")))
    s.author("bob", "bob-post-after-seeing (void)", Post(content=text("unfair")))
    s.natural_orders()
    return s


def fork() -> Scenario:
    s = Scenario(
        "fork",
        "Bob's first device signs two different events at seq 3 and continues one branch. "
        "Once a replica holds both, the device is frozen at seq 3: its events from seq 3 "
        "on are void, whatever the order; Bob stays a member and writes from his second "
        "device. Carol's event that names a branch event in deps is effective.",
        GroupDescriptor(
            kind="public",
            name="Hackers",
            tags=(),
            rules=Rules(join="open", post="member", invite="admin", slow=0),
        ),
        covers=["fork", "fork freezes a device", "events of other devices depending on a fork"],
    )
    s.author("bob", "bob-join", MemberJoin())
    s.author("bob", "bob-post-2", Post(content=text("seq 2")))
    engine = s.replica("bob")
    head = engine.log.head_of(s.actors["bob"].devices[0].public_key)
    assert head is not None
    prev = engine.log.get(head[1])
    assert prev is not None
    lt = prev.event.lamport + 1
    a3 = s.author("bob", "bob-seq3-a", Post(content=text("branch a")))
    s.craft(
        "bob",
        "bob-seq3-b",
        Post(content=text("branch b")).to_value() | {"$kind": "post"},
        seq=3,
        prev=head[1],
        lt=lt,
        ts=s.tick(),
    )
    s.author("bob", "bob-seq4-a", Post(content=text("branch a continues")), sync=False)
    s.author("carol", "carol-join", MemberJoin())
    s.author("carol", "carol-post", Post(content=text("I saw branch a")))
    s.author("bob", "bob-second-device", Post(content=text("from my phone")), device=1)
    del a3
    labels = [label for label, _ in s.events]
    b_first = [x for x in labels if x != "bob-seq3-a"]
    b_first.insert(b_first.index("bob-seq3-b") + 1, "bob-seq3-a")
    s.natural_orders([b_first])
    return s


def private_sealed() -> Scenario:
    s = Scenario(
        "private-sealed",
        "A private group: content only inside sealed events, folded from their plaintexts; "
        "a sealed event with no plaintext is a placeholder; a sealed membership kind is "
        "void; skey.dist is effective without a visible effect; a departure bumps the epoch.",
        GroupDescriptor(
            kind="private",
            name="Family",
            tags=(),
            rules=Rules(join="invite", post="member", invite="admin", slow=0),
        ),
        covers=["sealed", "skey.dist", "placeholder", "inner kind not content", "epoch"],
    )
    a = s.actors
    rng = rng_for("private")
    body, token = new_invite(
        rng, group=s.group, inviter=a["alice"].key, role="member", expires=T0 + 10 * MINUTE, uses=2
    )
    s.author("alice", "invite", body)
    s.author("bob", "bob-join", MemberJoin(secret=token.secret))
    s.author("carol", "carol-join", MemberJoin(secret=token.secret))

    def sealed(who: str, label: str, inner: InnerEvent | None) -> bytes:
        return s.author(who, label, Sealed(ciphertext=rng(96)), plaintext=inner)

    post = sealed(
        "alice",
        "alice-sealed-post",
        InnerEvent(kind="post", body=Post(content=text("dinner at 8")).to_value()),
    )
    sealed(
        "bob",
        "bob-sealed-reply",
        InnerEvent(kind="reply", body=Reply(target=eid(post), content=text("ok")).to_value()),
    )
    sealed("carol", "carol-sealed-undecrypted", None)
    sealed(
        "bob",
        "bob-sealed-add (void: not a content kind)",
        InnerEvent(
            kind="member.add", body=MemberAdd(account=a["dave"].key, role="owner").to_value()
        ),
    )
    s.author(
        "alice",
        "alice-skey-dist",
        SenderKeyDistribution(
            epoch=0, boxes=(KeyBox(device=a["bob"].devices[0].public_key, box=rng(64)),)
        ),
    )
    s.author("carol", "carol-leaves", MemberLeave())
    sealed(
        "alice",
        "alice-sealed-react",
        InnerEvent(
            kind="react", body=Reaction(target=eid(post), emoji="\N{RED APPLE}", on=True).to_value()
        ),
    )
    s.natural_orders()
    return s


def slow_mode() -> Scenario:
    s = Scenario(
        "slow-mode",
        "slow = 60 s: a member's messages closer than that to its previous effective one "
        "are void; moderators and above are exempt; reactions are not messages.",
        GroupDescriptor(
            kind="public",
            name="Calm",
            tags=(),
            rules=Rules(join="open", post="member", invite="admin", slow=60),
        ),
        covers=["slow mode"],
    )
    s.author("bob", "bob-join", MemberJoin())
    p = s.author("bob", "bob-post-1", Post(content=text("one")), at=T0 + 10 * SECOND)
    s.author("bob", "bob-post-2 (void: 30 s later)", Post(content=text("two")), at=T0 + 40 * SECOND)
    s.author(
        "bob",
        "bob-react",
        Reaction(target=eid(p), emoji="\N{SMILING FACE WITH SMILING EYES}", on=True),
        at=T0 + 45 * SECOND,
    )
    s.author("bob", "bob-post-3", Post(content=text("three")), at=T0 + 70 * SECOND)
    s.author("alice", "alice-post-1", Post(content=text("owner 1")), at=T0 + 71 * SECOND)
    s.author("alice", "alice-post-2", Post(content=text("owner 2")), at=T0 + 72 * SECOND)
    s.natural_orders()
    return s


def acceptance() -> Scenario:
    """Events refused before they are stored (groups.md §2), one per rule."""
    s = Scenario(
        "acceptance-refusals",
        "Each refused event breaks one acceptance rule of groups.md §2; refused events are "
        "not stored and change nothing. (buffer-full depends on a local bound and is not "
        "a vector.)",
        GroupDescriptor(
            kind="public",
            name="Strict",
            tags=(),
            rules=Rules(join="open", post="member", invite="admin", slow=0),
        ),
        covers=[
            "wrong-group",
            "bad-kind",
            "from-future",
            "bad-deps",
            "broken-chain",
            "bad-lamport",
            "ts-regress",
            "missing-cert",
            "bad-cert",
            "account-mismatch",
            "bad-signature",
        ],
    )
    a = s.actors
    join = s.author("bob", "bob-join", MemberJoin())
    post = s.author("bob", "bob-post", Post(content=text("fine")))
    gen = ev(s.genesis)
    j, p = ev(join), ev(post)
    body = Post(content=text("refused")).to_value() | {"$kind": "post"}
    bob, carol = a["bob"], a["carol"]
    other_group = blake2b(b"another group", size=32)
    s.craft(
        "bob",
        "wrong-group",
        dict(body),
        seq=3,
        prev=eid(post),
        lt=p.lamport + 1,
        ts=s.tick(),
        group=other_group,
    )
    s.craft(
        "bob",
        "bad-kind (live.comment in a public group)",
        LiveComment(
            media=MediaRef(hash=bytes(32), mime="video/mp4", size=1), offset=0, text="hi"
        ).to_value()
        | {"$kind": "live.comment"},
        seq=3,
        prev=eid(post),
        lt=p.lamport + 1,
        ts=s.tick(),
    )
    s.craft(
        "bob",
        "bad-kind (sealed in a public group)",
        {"$kind": "sealed", "e": b"x" * 32},
        seq=3,
        prev=eid(post),
        lt=p.lamport + 1,
        ts=s.tick(),
    )
    s.craft(
        "bob",
        "from-future",
        dict(body),
        seq=3,
        prev=eid(post),
        lt=p.lamport + 1,
        ts=NOW + 11 * MINUTE,
    )
    s.craft(
        "bob",
        "bad-deps (own chain)",
        dict(body),
        seq=3,
        prev=eid(post),
        deps=(eid(join),),
        lt=p.lamport + 1,
        ts=s.tick(),
    )
    s.craft(
        "bob",
        "broken-chain (prev of another device)",
        dict(body),
        seq=3,
        prev=s.group,
        lt=p.lamport + 1,
        ts=s.tick(),
    )
    s.craft("bob", "bad-lamport", dict(body), seq=3, prev=eid(post), lt=p.lamport + 5, ts=s.tick())
    s.craft(
        "bob",
        "ts-regress",
        dict(body),
        seq=3,
        prev=eid(post),
        lt=p.lamport + 1,
        ts=p.ts - 11 * MINUTE,
    )
    s.craft(
        "dave",
        "missing-cert",
        {"$kind": "member.join"},
        seq=1,
        prev=None,
        deps=(eid(post),),
        lt=p.lamport + 1,
        ts=s.tick(),
    )
    s.craft(
        "erin",
        "bad-cert (certificate of another device)",
        {"$kind": "member.join"},
        seq=1,
        prev=None,
        deps=(eid(post),),
        lt=p.lamport + 1,
        ts=s.tick(),
        cert=bob.devices[0].certificate.encode(),
    )
    s.craft(
        "bob",
        "account-mismatch",
        dict(body),
        seq=3,
        prev=eid(post),
        lt=p.lamport + 1,
        ts=s.tick(),
        account=carol.key,
    )
    s.craft(
        "bob",
        "bad-signature",
        dict(body),
        seq=3,
        prev=eid(post),
        lt=p.lamport + 1,
        ts=s.tick(),
        bad_signature=True,
    )
    s.author("carol", "carol-join", MemberJoin())
    del gen, j
    labels = [label for label, _ in s.events]
    s.orders = [labels, labels[::-1]]
    return s


def live_group() -> Scenario:
    s = Scenario(
        "live-log",
        "A live group's log: live comments are not log entries, so they never appear in "
        "these vectors' events (groups.md §9); the log itself behaves as a public group's.",
        GroupDescriptor(
            kind="live",
            name="Premiere",
            tags=(),
            rules=Rules(join="open", post="member", invite="admin", slow=0),
        ),
        covers=["live group log"],
    )
    s.author("bob", "bob-join", MemberJoin())
    s.author("alice", "alice-post", Post(content=text("starting at 9")))
    s.natural_orders()
    return s


def device_revocation() -> Scenario:
    s = Scenario(
        "device-revocation",
        "Bob revokes his second device (devices.md section 7): the device.revoke carries "
        "his account's signed revocation and the device's last valid seq (upto). Its post "
        "before the cut stays; the one after it (sorted before the revocation, written "
        "with an old Lamport time) is void whatever the order. Carol copies in a "
        "revocation of Alice's second device that she signed herself: it binds only "
        "Carol's own devices, so Alice's post stays. Each valid revocation by a member "
        "moves the epoch on.",
        GroupDescriptor(
            kind="public",
            name="Lost phones",
            tags=(),
            rules=Rules(join="open", post="member", invite="admin", slow=0),
        ),
        covers=["device.revoke", "revoked device's later events void", "forged revocation"],
    )
    bob, alice, carol = s.actors["bob"], s.actors["alice"], s.actors["carol"]
    phone = bob.devices[1].public_key
    s.author("bob", "bob-join", MemberJoin())
    s.author("bob", "phone-post", Post(content=text("from my phone")), device=1)
    s.author("alice", "alice-post", Post(content=text("from alice's second device")), device=1)
    engine = s.replica("bob")
    head = engine.log.head_of(phone)
    assert head is not None
    before = engine.log.get(head[1])
    assert before is not None
    revocation = Revocation.sign(
        device=phone, at=s.clock, signing_key=ExternalSigner(bob.key, bob.account.sign)
    )
    s.author("bob", "bob-revokes-phone", DeviceRevoke(revocation=revocation, upto=head[0]))
    s.craft(
        "bob",
        "phone-after-cut",
        Post(content=text("sent by a thief")).to_value() | {"$kind": "post"},
        device=1,
        seq=head[0] + 1,
        prev=head[1],
        lt=before.event.lamport + 1,
        ts=s.tick(),
    )
    s.author("carol", "carol-join", MemberJoin())
    forged = Revocation.sign(
        device=alice.devices[1].public_key,
        at=s.clock,
        signing_key=ExternalSigner(carol.key, carol.account.sign),
    )
    s.author("carol", "carol-forged-revoke", DeviceRevoke(revocation=forged, upto=0))
    s.natural_orders()
    return s


SCENARIOS: tuple[Callable[[], Scenario], ...] = (
    public_basics,
    invites,
    approval_and_cap,
    moderation,
    concurrent_removal,
    concurrent_ban_and_posts,
    fork,
    device_revocation,
    private_sealed,
    slow_mode,
    acceptance,
    live_group,
)


# --- replay and expected state -----------------------------------------------------------


def replay(s: Scenario, order: list[str]) -> tuple[GroupEngine, dict[str, str]]:
    """A fresh replica fed ``order`` one event at a time; returns it and the refusals."""
    by_label = dict(s.events)
    engine = GroupEngine.from_genesis(s.genesis, group_id=s.group)
    refused: dict[str, str] = {}
    for label in order:
        try:
            engine.receive(by_label[label], now=NOW)
        except (GroupError, WireError) as exc:
            refused[label] = exc.reason
    for label, inner in s.plaintexts.items():
        event_id = eid(by_label[label])
        if engine.event_bytes(event_id) is not None:
            engine.provide_plaintext(event_id, inner)
    return engine, refused


def state_of(s: Scenario, engine: GroupEngine) -> dict[str, Any]:
    names = {actor.key: name for name, actor in s.actors.items()}
    devices = {
        d.public_key: f"{name}/{i}"
        for name, actor in s.actors.items()
        for i, d in enumerate(actor.devices)
    }
    label = s.labels.get
    state = engine.state
    ordered = engine.ordered_events()
    view = engine.view

    def who(account: bytes) -> dict[str, str]:
        return {"account": account.hex(), "name": names[account]}

    return {
        "order": [label(e.event_id) for e in ordered],
        "effective": [label(e.event_id) for e in ordered if engine.is_effective(e.event_id)],
        "members": sorted(
            ({**who(k), "role": r} for k, r in state.members.items()), key=lambda m: m["account"]
        ),
        "banned": sorted(
            ({**who(k), "until": u} for k, u in state.banned.items()), key=lambda m: m["account"]
        ),
        "pending": sorted((who(k) for k in state.pending), key=lambda m: m["account"]),
        "epoch": state.epoch,
        "forked": sorted(
            (
                {"device": d.hex(), "name": devices[d], "seq": q}
                for d, q in engine.log.frozen.items()
            ),
            key=lambda f: f["device"],
        ),
        "history_hash": engine.history_hash().hex(),
        "messages": [
            {
                "id": label(m.ref.event_id),
                "kind": m.kind,
                "author": names[m.ref.account],
                "text": m.text,
                "reply_to": None if m.reply_to is None else label(m.reply_to, m.reply_to.hex()),
                "edited": m.edited,
                "deleted": m.deleted,
                "sealed": m.sealed,
                "reactions": {
                    e: sorted(names[x] for x in accts) for e, accts in m.reactions.items()
                },
            }
            for m in view.messages
        ],
        "polls": {
            label(k): {"counts": list(t.counts), "voters": t.voters} for k, t in view.polls.items()
        },
        "buys": {
            label(k): {"units": list(b.units), "reached": b.reached} for k, b in view.buys.items()
        },
    }


def to_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"bstr": value.hex()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def scenario_json(s: Scenario) -> dict[str, Any]:
    engine, refused = replay(s, s.orders[0])
    expected = state_of(s, engine)
    for order in s.orders[1:]:
        other, other_refused = replay(s, order)
        got = state_of(s, other)
        # (Refusal reasons are compared in the first order only: in others, an event may
        # wait for its ancestors and then be dropped silently, groups.md §2.)
        if got != expected or set(other_refused) - set(refused):
            raise AssertionError(f"{s.name}: delivery order {order} gives another state")
    assert set(expected["order"]) | set(refused) == {label for label, _ in s.events} | {"genesis"}
    return {
        "name": s.name,
        "about": s.about,
        "covers": s.covers,
        "now": NOW,
        "group": s.group.hex(),
        "descriptor": to_json(s.descriptor.to_value()),
        "actors": {
            name: {"account": a.key.hex(), "devices": [d.public_key.hex() for d in a.devices]}
            for name, a in s.actors.items()
        },
        "genesis": s.genesis.hex(),
        "events": [
            {
                "label": label,
                "hex": data.hex(),
                "id": eid(data).hex(),
                "value": to_json(cbor.decode(data, max_size=len(data))),
            }
            for label, data in s.events
        ],
        "plaintexts": {label: inner.to_bytes().hex() for label, inner in s.plaintexts.items()},
        "orders": s.orders,
        "expect": {"refused": refused, **expected},
    }


def invite_pairs(s: Scenario) -> list[dict[str, Any]]:
    by_label = dict(s.events)
    engine, _ = replay(s, s.orders[0])
    pairs = []
    for invite_label, (token, joins, voids) in s.tokens.items():  # type: ignore[attr-defined]
        invite = ev(by_label[invite_label])
        assert invite.parsed.invite == invite_hash(token.secret)
        for join_label in joins + voids:
            effective = engine.is_effective(eid(by_label[join_label]))
            assert effective == (join_label in joins)
            pairs.append(
                {
                    "scenario": s.name,
                    "secret": token.secret.hex(),
                    "inv": invite_hash(token.secret).hex(),
                    "token": token.to_text(),
                    "token_value": to_json(cbor.decode(token.to_bytes(), max_size=4096)),
                    "invite": {"label": invite_label, "hex": by_label[invite_label].hex()},
                    "join": {"label": join_label, "hex": by_label[join_label].hex()},
                    "join_effective": effective,
                }
            )
    return pairs


TAGS = (
    ("hiking", "ASCII lower case"),
    ("Hiking", "ASCII upper case folds"),
    ("Straße", "ß stays ß (no full case folding): differs from STRASSE"),
    ("STRASSE", "folds to strasse, another topic than Straße"),
    ("ΟΔΟΣ", "capital sigma lower-cases to σ (no final-sigma context rule)"),
    ("οδος", "a final ς stays ς"),
    ("İstanbul", "İ lower-cases to i + U+0307 (full mapping, no Turkish locale)"),
    ("ﬁlm", "NFKC expands the ligature"),
    ("Ｆｕｌｌｗｉｄｔｈ", "NFKC maps fullwidth letters to ASCII"),
    ("Café", "precomposed é"),
    ("Cafe\u0301", "e + combining acute: NFKC composes it, same topic as Café"),
    ("東京", "no case"),
    ("①", "NFKC: circled digit one is 1"),
    ("Ⅻ", "NFKC: roman numeral twelve is XII, then xii"),
    ("\u212a", "KELVIN SIGN: NFKC gives K, then k"),
    ("ǅ", "title-case digraph lower-cases to ǆ"),
    ("ΣΑΣ", "every Σ becomes σ, also at the end"),
)


def tag_vectors() -> list[dict[str, Any]]:
    return [
        {
            "tag": tag,
            "tag_utf8": tag.encode().hex(),
            "folded": fold_tag(tag),
            "folded_utf8": fold_tag(tag).encode().hex(),
            "topic_key": topic_key(tag).hex(),
            "dht_key": dht_key("topic", topic_key(tag)),
            "note": note,
        }
        for tag, note in TAGS
    ]


def _dump(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def generate() -> dict[str, str]:
    built = [make() for make in SCENARIOS]
    scenarios = [scenario_json(s) for s in built]
    invite_scenario = next(s for s in built if s.name == "invites")
    return {
        "groups/scenarios.json": _dump({"now": NOW, "scenarios": scenarios}),
        "groups/invites.json": _dump({"pairs": invite_pairs(invite_scenario)}),
        "groups/tags.json": _dump({"unicode": "14.0.0", "tags": tag_vectors()}),
    }


if __name__ == "__main__":
    for rel, content in generate().items():
        (HERE / rel).parent.mkdir(parents=True, exist_ok=True)
        (HERE / rel).write_text(content)
        print(f"wrote protocol-spec/vectors/{rel}")

"""Wire-protocol vectors (protocol-spec/vectors/wire/) and the CDDL of protocol-spec/schemas/.

    python protocol-spec/vectors/generate.py   # writes wire/*.json and ../schemas/*.cddl
                                               # (and every other vector set)

Everything is deterministic: keys come from fixed seeds, times are fixed. Every vector
names a *pipeline* (``check``) that says which steps a receiver applies; wire.md,
section "Test vectors", defines them. :func:`run_check` is our implementation of those
pipelines; the generator asserts that every valid vector passes and every invalid one
fails with exactly its ``reason`` before writing anything.

JSON conventions: a CBOR byte string is ``{"bstr": "<hex>"}``; nested canonical CBOR
(envelope payloads, events inside a batch, a record's genesis) is shown decoded beside
the raw bytes, under ``decoded``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey
from p2pchat_crypto import cbor
from p2pchat_crypto.identity import Account
from p2pchat_crypto.kdf import blake2b

from p2pchat.errors import WireError
from p2pchat.protocol import mailbox as mb
from p2pchat.protocol.blob import Manifest, blob_id_of
from p2pchat.protocol.codec import Struct
from p2pchat.protocol.device_list import DeviceListNotice
from p2pchat.protocol.profile import ProfileBody
from p2pchat.protocol.content import (
    Content,
    DeleteBody,
    EditBody,
    ImageBody,
    MediaRef,
    Price,
    ReactBody,
)
from p2pchat.protocol.dm_messages import (
    ContactAccept,
    ContactDecline,
    ContactRequest,
    DmAck,
    DmRefuse,
    DmInit,
    DmMessage,
    DmPlaintext,
)
from p2pchat.protocol.envelope import decode_envelope, seal
from p2pchat.protocol.framing import MAX_FRAME, FrameDecoder, encode_frame, encode_varint
from p2pchat.protocol.group_events import (
    Delete,
    Edit,
    Genesis,
    GroupBuy,
    GroupBuyJoin,
    GroupDescriptor,
    InnerEvent,
    KeyBox,
    LiveComment,
    MemberAdd,
    MemberBan,
    DeviceRevoke,
    MemberInvite,
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
from p2pchat.protocol.live_messages import LiveBatch, LiveWant
from p2pchat.protocol.revocation import Revocation
from p2pchat.protocol.records import (
    DeviceEntry,
    DeviceListRecord,
    GroupRecord,
    MailboxEntry,
    MailboxRecord,
    PrekeyRecord,
    TopicEntry,
    TopicRecord,
    dht_key,
    sign_record,
    topic_key,
    validate_record,
)
from p2pchat.protocol.schema import kind_rule, schema_files
from p2pchat.protocol.signing import sign_map
from p2pchat.protocol.sync_messages import (
    Head,
    Run,
    SyncBatch,
    SyncEnd,
    SyncFrontier,
    SyncWant,
    WantRange,
    authenticate_run,
)

HERE = Path(__file__).resolve().parent
#: 2026-01-01T00:00:00Z, the "now" of every vector.
NOW = 1_767_225_600_000
MAILBOX_PEER = "12D3KooWMailboxPeerForTestVectorsOnly"


def key(name: str) -> SigningKey:
    """A deterministic Ed25519 key (test vectors only)."""
    return SigningKey(blake2b(name.encode(), size=32, person=b"p2pchat-vectors"))


def ident(name: str, size: int = 16) -> bytes:
    """Deterministic filler bytes of any length (ids, opaque ciphertexts)."""
    out = b""
    counter = 0
    while len(out) < size:
        out += blake2b(f"{name}/{counter}".encode(), size=64, person=b"p2pchat-vec-id")
        counter += 1
    return out[:size]


ALICE, BOB, CAROL = key("alice-device"), key("bob-device"), key("carol-device")
ALICE_ACCT, BOB_ACCT, CAROL_ACCT = (bytes(key(n).verify_key) for n in ("alice", "bob", "carol"))


def certificate(account: str, device: SigningKey) -> bytes:
    """The device certificate (crypto.md §3.2) a device's first event carries (wire.md §8)."""
    seed = blake2b(account.encode(), size=32, person=b"p2pchat-vectors")
    holder = Account(signing_seed=seed, identity_dh_secret=blake2b(seed, size=32))
    cert = holder.certify_device(bytes(device.verify_key), now=NOW - 86_400_000)
    return cert.encode()


TAG_SEED = blake2b(b"bob-mailbox-tag", size=32, person=b"p2pchat-vectors")
TAG_KEY = SigningKey(TAG_SEED)


def vector_rng(seed: str) -> Callable[[int], bytes]:
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


def sealed_blob() -> bytes:
    """A dm.msg envelope from Alice, sealed to Bob's mailbox tag."""
    envelope = seal(DmMessage(id=ident("m9"), ratchet=ident("offline-ratchet-message", 96)),
                    signing_key=ALICE, now=NOW)  # fmt: skip
    return mb.seal_for_tag(envelope, tag=bytes(TAG_KEY.verify_key), rng=vector_rng("seal"))


# --- the receiver pipelines ----------------------------------------------------------------


def run_check(check: str, data: bytes, vector: dict[str, Any]) -> object:
    """Apply pipeline ``check`` to ``data``; raise ``WireError`` on the first failure."""
    if check == "frame":
        decoder = FrameDecoder(max_frame=MAX_FRAME)
        decoder.feed(data)
        frame = decoder.next_frame()
        if frame is None or not decoder.at_boundary:
            raise WireError("truncated", "not exactly one complete frame")
        return run_check("envelope", frame, vector)
    if check == "envelope":
        env = decode_envelope(data)
        env.verify()
        message = env.open()
        if isinstance(message, SyncBatch):
            for run in message.runs:
                authenticate_run(run, group=message.group)
        return message
    if check == "event":
        event = decode_event(data)
        event.verify()
        return event
    if check == "inner-event":
        inner = InnerEvent.from_bytes(data, max_size=len(data))
        inner.parsed()
        return inner
    if check == "dm-plaintext":
        return DmPlaintext.from_bytes(data, max_size=len(data))
    if check == "record":
        return validate_record(vector["dht_key"], data, now=vector["now"])
    if check == "mailbox-blob":
        tag_key = SigningKey(bytes.fromhex(vector["tag_seed"]))
        return run_check("envelope", mb.open_for_tag(data, tag_key=tag_key), vector)
    if check == "mailbox":
        message = mb.decode_mailbox_frame(data)
        if isinstance(message, mb.MailboxFetch | mb.MailboxDelete):
            mb.verify_request(message, mailbox=vector["mailbox"], now=vector["now"])
        return message
    raise ValueError(f"unknown check {check!r}")


# --- JSON rendering ------------------------------------------------------------------------


def to_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"bstr": value.hex()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def _decoded(check: str, data: bytes) -> dict[str, Any]:
    """The value, with nested canonical CBOR decoded beside it."""
    value = cbor.decode(data, max_size=len(data))
    out: dict[str, Any] = {"value": to_json(value)}
    if check in ("envelope", "mailbox"):
        out["payload"] = to_json(cbor.decode(value["p"], max_size=len(value["p"])))
        if value.get("k") == "sync.batch":
            payload = cbor.decode(value["p"], max_size=len(value["p"]))
            out["events"] = [
                [to_json(cbor.decode(e, max_size=len(e))) for e in run["evs"]]
                for run in payload["runs"]
            ]
    if check == "record" and value["ns"] == "group":
        gen = value["body"]["gen"]
        out["genesis"] = to_json(cbor.decode(gen, max_size=len(gen)))
    return out


# --- valid messages ------------------------------------------------------------------------

TEXT = Content(type="p2pchat/text", body={}, text="hello, group")
IMAGE_REF = MediaRef(hash=ident("cat.jpg", 32), mime="image/jpeg", size=48213)
VIDEO_REF = MediaRef(
    hash=ident("movie.mp4", 32), mime="video/mp4", size=734_003_200, url="https://example.org/m.mp4"
)


def _genesis(kind: str = "private") -> bytes:
    desc = GroupDescriptor(
        kind=kind,
        name="Hiking club",
        tags=("hiking", "outdoors"),
        rules=Rules(join="invite", post="member", invite="admin", slow=0, max_members=500),
        about="Weekend hikes around the lake.",
    )
    return sign_event(
        Genesis(descriptor=desc, nonce=ident("genesis-nonce")),
        signing_key=ALICE,
        account=ALICE_ACCT,
        group=None,
        seq=1,
        prev=None,
        lamport=1,
        now=NOW,
        cert=certificate("alice", ALICE),
    )


GENESIS = _genesis()
GROUP = decode_event(GENESIS).event_id


def _event(body: Struct, *, seq: int, prev: bytes, author: str = "alice", lt: int = 0) -> bytes:
    signing, account = (ALICE, ALICE_ACCT) if author == "alice" else (BOB, BOB_ACCT)
    return sign_event(
        body,
        signing_key=signing,
        account=account,
        group=GROUP,
        seq=seq,
        prev=prev,
        deps=() if author == "alice" else (GROUP,),
        lamport=lt or seq,
        now=NOW + seq * 1000,
    )


def _event_bodies() -> list[Struct]:
    post = ident("post-event", 32)
    return [
        MemberAdd(account=BOB_ACCT, role="member"),
        MemberInvite(invite=ident("invite-secret", 32), role="member", expires=NOW + 86_400_000),
        MemberJoin(secret=ident("invite-secret-raw", 32)),
        MemberLeave(reason="moving away"),
        MemberRemove(account=CAROL_ACCT, reason="spam"),
        MemberBan(account=CAROL_ACCT, reason="spam", until=NOW + 7 * 86_400_000),
        RoleChange(account=BOB_ACCT, role="moderator"),
        DeviceRevoke(
            revocation=Revocation.sign(
                device=bytes(CAROL.verify_key), at=NOW, signing_key=key("alice")
            ),
            upto=3,
        ),
        SenderKeyDistribution(
            epoch=1,
            boxes=(KeyBox(device=bytes(BOB.verify_key), box=ident("sender-key-box", 64)),),
        ),
        Sealed(ciphertext=ident("sealed-ciphertext", 64)),
        Post(content=TEXT),
        Reply(target=post, content=Content(type="p2pchat/text", body={"fmt": "plain"}, text="+1")),
        Reaction(target=post, emoji="\N{THUMBS UP SIGN}", on=True),
        Edit(target=post, content=Content(type="p2pchat/text", body={}, text="hello, club")),
        Delete(target=post, reason="duplicate"),
        ShareCard(
            title="Trail shoes",
            url="https://shop.example/shoes/42",
            price=Price(amount=8999, currency="EUR"),
            image=IMAGE_REF,
            note="on sale this week",
        ),
        Poll(
            question="Saturday or Sunday?",
            options=("Sat", "Sun"),
            multi=False,
            deadline=NOW + 3_600_000,
        ),
        Vote(poll=post, choices=(1,)),
        GroupBuy(
            title="Group order: headlamps",
            options=("red", "black"),
            quota=10,
            deadline=NOW + 7 * 86_400_000,
            price=Price(amount=2450, currency="EUR"),
            url="https://shop.example/lamps",
        ),
        GroupBuyJoin(buy=post, option=1, quantity=2),
        LiveComment(media=VIDEO_REF, offset=754_250, text="this scene!", color=0xFFCC00),
    ]


def _chain(count: int) -> list[bytes]:
    """Alice's chain: genesis then ``count - 1`` posts."""
    events = [GENESIS]
    for seq in range(2, count + 1):
        prev = decode_event(events[-1]).event_id
        text = Content(type="p2pchat/text", body={}, text=f"post {seq}")
        events.append(_event(Post(content=text), seq=seq, prev=prev))
    return events


def _envelope_messages() -> list[Struct]:
    chain = _chain(3)
    head = decode_event(chain[-1])
    return [
        DmInit(id=ident("m1"), x3dh=ident("x3dh-initial-message", 64)),
        DmMessage(id=ident("m2"), ratchet=ident("ratchet-message", 64)),
        DmAck(ids=(ident("m1"), ident("m2"))),
        ContactRequest(request_id=ident("r1"), account=ALICE_ACCT, name="Alice", note="Hi Bob!"),
        ContactAccept(request_id=ident("r1"), account=BOB_ACCT, name="Bob"),
        ContactDecline(request_id=ident("r1")),
        DmRefuse(ids=(ident("m3"),), reason="declined"),
        SyncFrontier(
            group=GROUP, heads=(Head(device=bytes(ALICE.verify_key), seq=3, hash=head.event_id),)
        ),
        SyncWant(group=GROUP, ranges=(WantRange(device=bytes(ALICE.verify_key), first=1, last=3),)),
        SyncBatch(group=GROUP, runs=(Run(device=bytes(ALICE.verify_key), events=tuple(chain)),)),
        SyncEnd(group=GROUP, more=False),
        LiveWant(group=GROUP, media=VIDEO_REF.hash, start=600_000, end=720_000, max=512),
        LiveBatch(group=GROUP, events=(_live_comment(),), more=False),
    ]


def _live_comment() -> bytes:
    """Alice's comment at 10:30 of the movie (the seq of her next chain position, 2)."""
    comment = LiveComment(media=VIDEO_REF, offset=630_000, text="here it comes")
    return _event(comment, seq=2, prev=decode_event(GENESIS).event_id)


def _records() -> list[tuple[str, bytes, bytes]]:
    """(namespace, key, record bytes)."""
    exp = NOW + 7 * 86_400_000
    devs = DeviceListRecord(
        devices=(DeviceEntry(device=bytes(ALICE.verify_key), cert=ident("device-cert", 100)),)
    )
    topic = TopicRecord(
        tag="hiking", groups=(TopicEntry(group=GROUP, name="Hiking club", kind="private"),)
    )
    boxes = MailboxRecord(
        mailboxes=(MailboxEntry(peer=MAILBOX_PEER, addrs=("/ip4/127.0.0.1/tcp/4001",)),)
    )
    alice = key("alice")
    return [
        ("prekeys", ALICE_ACCT, sign_record(PrekeyRecord(bundle=ident("prekey-bundle", 200)), ns="prekeys", key=ALICE_ACCT, seq=3, expires=exp, signing_key=alice)),
        ("devices", ALICE_ACCT, sign_record(devs, ns="devices", key=ALICE_ACCT, seq=1, expires=exp, signing_key=alice)),
        ("group", GROUP, sign_record(GroupRecord(genesis=GENESIS, peers=("12D3KooWAlicePeer",)), ns="group", key=GROUP, seq=1, expires=exp, signing_key=ALICE)),
        ("topic", topic_key("hiking"), sign_record(topic, ns="topic", key=topic_key("hiking"), seq=1, expires=exp, signing_key=ALICE)),
        ("mailbox", ALICE_ACCT, sign_record(boxes, ns="mailbox", key=ALICE_ACCT, seq=2, expires=exp, signing_key=alice)),
    ]  # fmt: skip


#: A one-chunk blob's manifest (a mailbox is asked to hold that blob).
_MANIFEST = Manifest.build(5, [blake2b(b"sealed chunk", size=32, person=b"p2pchat-vectors")])


def _mailbox_messages() -> list[Struct]:
    fetch = mb.sign_request(
        mb.MailboxFetch(tag=b"", mailbox=MAILBOX_PEER, ts=NOW, limit=50, sig=b""), tag_key=TAG_KEY
    )
    delete = mb.sign_request(
        mb.MailboxDelete(tag=b"", mailbox=MAILBOX_PEER, ts=NOW, ids=(ident("item1"),), sig=b""),
        tag_key=TAG_KEY,
    )
    return [
        mb.MailboxStore(tag=bytes(TAG_KEY.verify_key), blob=sealed_blob(), ttl=604_800),
        mb.MailboxStored(id=ident("item1"), expires=NOW + 604_800_000),
        fetch,
        mb.MailboxItems(items=(mb.MailboxItem(id=ident("item1"), blob=sealed_blob(), at=NOW),), more=False),
        delete,
        mb.MailboxDeleted(count=1),
        mb.MailboxHold(blob=blob_id_of(_MANIFEST.to_bytes()), manifest=_MANIFEST.to_bytes(), ttl=604_800),
        mb.MailboxHeld(blob=blob_id_of(_MANIFEST.to_bytes()), expires=NOW + 604_800_000),
        mb.MailboxRefused(why="quota-sender", limit=67_108_864),
    ]  # fmt: skip


def valid_vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = []

    def add(name: str, check: str, rule: str, data: bytes, **extra: Any) -> None:
        vectors.append({"name": name, "check": check, "rule": rule, "hex": data.hex(), **extra})

    for message in _envelope_messages():
        kind = message.KIND  # type: ignore[attr-defined]
        add(
            kind,
            "envelope",
            f"envelope-{kind_rule(kind)}",
            seal(message, signing_key=ALICE, now=NOW),
            kind=kind,
        )
    add(
        "dm.ack (framed)",
        "frame",
        "",
        encode_frame(seal(DmAck(ids=(ident("m1"),)), signing_key=BOB, now=NOW)),
    )
    # Forward compatibility: an unknown field is ignored, and it is covered by the signature.
    value = cbor.decode(
        seal(ContactDecline(request_id=ident("r1")), signing_key=BOB, now=NOW), max_size=MAX_FRAME
    )
    del value["sig"]
    value["x-future"] = {"hint": 1}
    value["sig"] = sign_map("envelope", value, BOB)
    add(
        "envelope with an unknown field",
        "envelope",
        "envelope-contact-decline",
        cbor.encode(value),
        kind="contact.decline",
    )
    # Nesting depth (wire.md §3): the top-level item is at depth 0; an item at depth 16 is
    # the deepest allowed. Here: the map (0), its unknown field's 15 nested arrays (1-15),
    # and the innermost array's element (16).
    add(
        "nesting at the maximum depth (16)",
        "envelope",
        "envelope-contact-decline",
        _resign({**value, "x-future": _nested(15)}, signer=BOB),
        kind="contact.decline",
    )

    add("genesis", "event", "event-genesis", GENESIS, kind="genesis")
    prev = GROUP
    for seq, body in enumerate(_event_bodies(), start=2):
        data = _event(body, seq=seq, prev=prev)
        add(body.KIND, "event", f"event-{kind_rule(body.KIND)}", data, kind=body.KIND)  # type: ignore[attr-defined]
        prev = decode_event(data).event_id
    unknown = sign_event(
        _Future(), signing_key=BOB, account=BOB_ACCT, group=GROUP, seq=1, prev=None,
        deps=(GROUP,), lamport=2, now=NOW, cert=certificate("bob", BOB),
    )  # fmt: skip
    add("event of an unknown kind (kept, not interpreted)", "event", "", unknown, kind="x.future")
    inner = InnerEvent(kind="post", body=Post(content=TEXT).to_value()).to_bytes()
    add("inner event (plaintext of sealed)", "inner-event", "inner-post", inner, kind="post")
    plain = DmPlaintext(id=ident("m2"), ts=NOW, content=Content(
        type="p2pchat/image", body=ImageBody(media=IMAGE_REF, width=640, height=480).to_value(),
        text="[image] my cat"), reply_to=ident("m1"))  # fmt: skip
    add("dm plaintext", "dm-plaintext", "dm-plaintext", plain.to_bytes())
    app = DmPlaintext(id=ident("m3"), ts=NOW, content=Content(
        type="com.example/recipe", body={"serves": 4, "steps": ["boil", "eat"]},
        text="Recipe: pasta (open in an app that knows com.example/recipe)"))  # fmt: skip
    add("dm plaintext, application content type", "dm-plaintext", "dm-plaintext", app.to_bytes())
    copy = DmPlaintext(id=ident("m4"), ts=NOW, content=TEXT, to=BOB_ACCT)
    add("dm plaintext, the copy for the sender's own other devices (to)", "dm-plaintext",
        "dm-plaintext", copy.to_bytes())  # fmt: skip
    # Changes of an earlier message (wire.md §7, "Reactions, edits and deletions"), and a
    # profile (node-to-node content).
    for n, (ctype, body, text) in enumerate([
        ("p2pchat/react", ReactBody(target=ident("m1"), emoji="\U0001f44d", on=True), "reacted \U0001f44d"),
        ("p2pchat/edit", EditBody(target=ident("m1")), "see you at 2"),
        ("p2pchat/delete", DeleteBody(target=ident("m1")), "deleted a message"),
        ("p2pchat/profile", ProfileBody(name="Alice", about="reads books", ts=NOW), ""),
        ("p2pchat/device-list", DeviceListNotice(list=_records()[1][2]), ""),
    ], start=5):  # fmt: skip
        change = DmPlaintext(
            id=ident(f"m{n}"), ts=NOW, content=Content(type=ctype, body=body.to_value(), text=text)
        )
        add(f"dm plaintext, {ctype}", "dm-plaintext", "dm-plaintext", change.to_bytes())

    for ns, key_bytes, data in _records():
        add(f"record {ns}", "record", f"record-{ns}", data, dht_key=dht_key(ns, key_bytes), now=NOW)
    for message in _mailbox_messages():
        kind = message.KIND  # type: ignore[attr-defined]
        add(kind, "mailbox", f"mailbox-frame-{kind_rule(kind)}", mb.encode_mailbox_frame(message), kind=kind,
            mailbox=MAILBOX_PEER, now=NOW)  # fmt: skip
    add("sealed mailbox blob (opens to a dm.msg envelope)", "mailbox-blob", "", sealed_blob(),
        tag_seed=TAG_SEED.hex())  # fmt: skip
    return vectors


def _nested(arrays: int) -> Any:
    """``arrays`` nested arrays around a 0."""
    inner: Any = 0
    for _ in range(arrays):
        inner = [inner]
    return inner


class _Future(Struct):
    """An event body of a kind from a later version."""

    KIND = "x.future"

    def to_value(self) -> dict[str, Any]:
        return {"answer": 42}


# --- invalid messages ----------------------------------------------------------------------


def _envelope_value(message: Struct, signer: SigningKey = ALICE) -> dict[str, Any]:
    value: dict[str, Any] = cbor.decode(
        seal(message, signing_key=signer, now=NOW), max_size=MAX_FRAME
    )
    return value


def _resign(value: dict[str, Any], context: str = "envelope", signer: SigningKey = ALICE) -> bytes:
    value = {k: v for k, v in value.items() if k != "sig"}
    value["sig"] = sign_map(context, value, signer)
    return cbor.encode(value)


def invalid_vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = []

    def bad(name: str, check: str, data: bytes, reason: str, **extra: Any) -> None:
        vectors.append({"name": name, "check": check, "hex": data.hex(), "reason": reason, **extra})

    copy = DmPlaintext(id=ident("m4"), ts=NOW, content=TEXT, to=BOB_ACCT).to_value()
    bad(
        "dm plaintext: to is 31 bytes",
        "dm-plaintext",
        cbor.encode({**copy, "to": BOB_ACCT[:31]}),
        "bad-length",
    )
    bad(
        "dm plaintext: to is text",
        "dm-plaintext",
        cbor.encode({**copy, "to": BOB_ACCT.hex()}),
        "wrong-type",
    )

    ack = DmAck(ids=(ident("m1"),))
    good = seal(ack, signing_key=ALICE, now=NOW)
    assert good[0] == 0xA6 and b"\x61\x76\x01" in good
    bad(
        "non-canonical integer (v as 0x18 0x01)",
        "envelope",
        good.replace(b"\x61\x76\x01", b"\x61\x76\x18\x01"),
        "non-canonical",
    )
    bad(
        "duplicate key (v twice)",
        "envelope",
        b"\xa7" + good[1:].replace(b"\x61\x76\x01", b"\x61\x76\x01\x61\x76\x01"),
        "duplicate-key",
    )
    bad(
        "tag (epoch tag 1 on t)",
        "envelope",
        good.replace(b"\x61\x74\x1b", b"\x61\x74\xc1\x1b"),
        "tag",
    )
    bad("trailing byte", "envelope", good + b"\x00", "trailing-bytes")
    bad("indefinite-length map", "envelope", b"\xbf" + good[1:] + b"\xff", "indefinite-length")
    bad(
        "float instead of integer",
        "envelope",
        good.replace(b"\x61\x76\x01", b"\x61\x76\xf9\x3c\x00"),
        "type",
    )
    bad(
        "invalid UTF-8 in a text string",
        "envelope",
        good.replace(b"\x61\x6b\x66dm.ack", b"\x61\x6b\x66dm.\xff\xfe"),
        "bad-utf8",
    )
    unsorted = b"\xa2\x61\x76\x01\x61\x6b\x66dm.ack"
    bad("unsorted map keys", "envelope", unsorted, "non-canonical")
    bad("truncated", "envelope", good[:-5], "truncated")
    bad("top level is not a map", "envelope", cbor.encode([1, 2]), "wrong-type")
    bad(
        "oversized frame (prefix announces MAX_FRAME + 1)",
        "frame",
        encode_varint(MAX_FRAME + 1) + good,
        "frame-too-large",
    )
    bad("non-minimal varint prefix", "frame", b"\x80\x00", "bad-varint")

    value = _envelope_value(ack)
    bad("wrong type (t is text)", "envelope", _resign({**value, "t": "now"}), "wrong-type")
    bad(
        "missing field (no s)",
        "envelope",
        _resign({k: v for k, v in value.items() if k != "s"}),
        "missing-field",
    )
    bad(
        "bad length (s is 31 bytes)",
        "envelope",
        _resign({**value, "s": value["s"][:31]}),
        "bad-length",
    )
    bad("integer map key", "envelope", _resign({**value, 7: 1}), "key-type")
    sig = bytearray(value["sig"])
    sig[0] ^= 1
    bad(
        "bad signature (one bit flipped)",
        "envelope",
        cbor.encode({**value, "sig": bytes(sig)}),
        "bad-signature",
    )
    bad("signature by another key", "envelope", _resign(value, signer=BOB), "bad-signature")
    bad(
        "signature in another context", "envelope", _resign(value, context="event"), "bad-signature"
    )
    bad("unsupported version", "envelope", _resign({**value, "v": 2}), "unsupported-version")
    bad("unknown kind", "envelope", _resign({**value, "k": "dm.future"}), "unknown-kind")
    # The order of checks (wire.md §3, "Which reason"): profile, then v, then fields in
    # table order, then rules across fields.
    deep = {k: v for k, v in value.items() if k != "sig"} | {"x-future": _nested(16)}
    bad(
        "nesting deeper than 16",
        "envelope",
        cbor.encode(deep | {"sig": bytes(64)}, max_depth=40),
        "too-deep",
    )
    bad(
        "byte-string map key (profile)",
        "envelope",
        b"\xa7" + good[1:] + b"\x41\x00\x01",
        "key-type",
    )
    bad("negative integer map key (message)", "envelope", _resign({**value, -1: 1}), "key-type")
    bad("v = 0", "envelope", _resign({**value, "v": 0}), "out-of-range")
    bad(
        "v = 2 and s missing: version first",
        "envelope",
        _resign({k: v for k, v in value.items() if k != "s"} | {"v": 2}),
        "unsupported-version",
    )
    bad(
        "v = 0 and s missing: v is the first field",
        "envelope",
        _resign({k: v for k, v in value.items() if k != "s"} | {"v": 0}),
        "out-of-range",
    )
    bad(
        "s missing and t text: fields in table order",
        "envelope",
        _resign({k: v for k, v in value.items() if k != "s"} | {"t": "now"}),
        "missing-field",
    )
    bad(
        "payload: empty ack list",
        "envelope",
        _resign({**value, "p": cbor.encode({"ids": []})}),
        "bad-length",
    )
    bad(
        "payload: non-canonical",
        "envelope",
        _resign({**value, "p": b"\xa1\x63ids\x81\x58\x10" + ident("m1")}),
        "non-canonical",
    )
    bad("payload: not a map", "envelope", _resign({**value, "p": cbor.encode("x")}), "wrong-type")
    want = _envelope_value(
        SyncWant(group=GROUP, ranges=(WantRange(device=GROUP, first=1, last=2),))
    )
    bad(
        "want range with from > to",
        "envelope",
        _resign(
            {**want, "p": cbor.encode({"g": GROUP, "ranges": [{"d": GROUP, "from": 5, "to": 2}]})}
        ),
        "invalid",
    )

    ev = cbor.decode(_event(Post(content=TEXT), seq=2, prev=GROUP), max_size=MAX_FRAME)
    bad("event: bad signature", "event", cbor.encode({**ev, "lt": 7}), "bad-signature")
    bad("event: prev present with seq 1", "event", _resign({**ev, "seq": 1}, "event"), "invalid")
    bad(
        "event: known kind, malformed body",
        "event",
        _resign({**ev, "b": {"c": {"type": "p2pchat/text", "body": {}}}}, "event"),
        "missing-field",
    )
    bad(
        "event: content type without namespace",
        "event",
        _resign({**ev, "b": {"c": {"type": "text", "body": {}, "text": ""}}}, "event"),
        "invalid",
    )
    bad("event: seq 0", "event", _resign({**ev, "seq": 0}, "event"), "out-of-range")
    bad(
        "event: integer above 2^53 - 1",
        "event",
        _resign({**ev, "ts": 2**53}, "event"),
        "out-of-range",
    )
    bad(
        "event: duplicate deps",
        "event",
        _resign({**ev, "deps": [GROUP, GROUP]}, "event"),
        "invalid",
    )
    gen = cbor.decode(GENESIS, max_size=MAX_FRAME)
    bad("event: genesis with a group id", "event", _resign({**gen, "g": GROUP}, "event"), "invalid")
    # Genesis shape (wire.md §8): a rule across fields, so `invalid` (whatever a CDDL
    # validator says about the same bytes).
    bad("event: genesis with seq 2", "event", _resign({**gen, "seq": 2}, "event"), "invalid")
    bad("event: genesis with lt 2", "event", _resign({**gen, "lt": 2}, "event"), "invalid")
    bad(
        "event: genesis with deps",
        "event",
        _resign({**gen, "deps": [ident("d", 32)]}, "event"),
        "invalid",
    )
    bad(
        "event: non-genesis kind without g",
        "event",
        _resign({k: v for k, v in ev.items() if k != "g"}, "event"),
        "invalid",
    )
    bad(
        "event: slow mode beyond one day",
        "event",
        _resign(
            {
                **gen,
                "b": {
                    **gen["b"],
                    "desc": {
                        **gen["b"]["desc"],
                        "rules": {**gen["b"]["desc"]["rules"], "slow": 86401},
                    },
                },
            },
            "event",
        ),
        "out-of-range",
    )

    chain = _chain(3)
    device = bytes(ALICE.verify_key)

    def batch(events: list[bytes]) -> bytes:
        return seal(
            SyncBatch(group=GROUP, runs=(Run(device=device, events=tuple(events)),)),
            signing_key=BOB,
            now=NOW,
        )

    bad("batch: gap in the chain", "envelope", batch([chain[0], chain[2]]), "broken-chain")
    forged = cbor.decode(chain[1], max_size=MAX_FRAME)
    forged["b"] = Post(content=Content(type="p2pchat/text", body={}, text="forged")).to_value()
    bad(
        "batch: middle event altered (its own signature is never checked)",
        "envelope",
        batch([chain[0], cbor.encode(forged), chain[2]]),
        "broken-chain",
    )
    last = cbor.decode(chain[2], max_size=MAX_FRAME)
    bad(
        "batch: last event's signature is bad",
        "envelope",
        batch([chain[0], chain[1], cbor.encode({**last, "sig": bytes(64)})]),
        "bad-signature",
    )
    bad("batch: run does not start at seq 1", "envelope", batch(chain[1:]), "broken-chain")
    # wire.md §9.1 rule 1: one device and one account per run.
    other = cbor.decode(chain[1], max_size=MAX_FRAME)
    relinked = cbor.decode(chain[2], max_size=MAX_FRAME)
    moved = _resign({**other, "aa": BOB_ACCT}, "event")
    bad(
        "batch: author account changes inside a run",
        "envelope",
        batch([chain[0], moved, _resign({**relinked, "prev": event_id_of(moved)}, "event")]),
        "broken-chain",
    )
    bad(
        "batch: run of another device than its d",
        "envelope",
        seal(
            SyncBatch(group=GROUP, runs=(Run(device=bytes(BOB.verify_key), events=tuple(chain)),)),
            signing_key=BOB,
            now=NOW,
        ),
        "broken-chain",
    )
    bad(
        "batch: Lamport time does not increase",
        "envelope",
        batch([chain[0], _resign({**other, "lt": 1}, "event")]),
        "broken-chain",
    )

    records = {ns: (k, d) for ns, k, d in _records()}
    k, d = records["prekeys"]
    rec = cbor.decode(d, max_size=MAX_FRAME)
    bad(
        "record: expired",
        "record",
        d,
        "expired",
        dht_key=dht_key("prekeys", k),
        now=NOW + 8 * 86_400_000,
    )
    bad(
        "record: key does not match",
        "record",
        d,
        "wrong-key",
        dht_key=dht_key("prekeys", BOB_ACCT),
        now=NOW,
    )
    bad(
        "record: signed by a non-owner",
        "record",
        _resign({**rec, "signer": bytes(BOB.verify_key)}, "record", BOB),
        "wrong-signer",
        dht_key=dht_key("prekeys", k),
        now=NOW,
    )
    bad(
        "record: bad signature",
        "record",
        cbor.encode({**rec, "seq": 4}),
        "bad-signature",
        dht_key=dht_key("prekeys", k),
        now=NOW,
    )
    bad(
        "record: malformed DHT key", "record", d, "bad-key", dht_key="/p2pchat/prekeys/XYZ", now=NOW
    )
    bad(
        "record: namespace differs from key",
        "record",
        d,
        "wrong-namespace",
        dht_key=dht_key("devices", k),
        now=NOW,
    )
    bad(
        "record: expiry beyond 30 days",
        "record",
        _resign({**rec, "exp": NOW + 31 * 86_400_000}, "record", key("alice")),
        "out-of-range",
        dht_key=dht_key("prekeys", k),
        now=NOW,
    )
    k, d = records["group"]
    grec = cbor.decode(d, max_size=MAX_FRAME)
    bad(
        "record: group record by another device",
        "record",
        _resign({**grec, "signer": bytes(BOB.verify_key)}, "record", BOB),
        "wrong-signer",
        dht_key=dht_key("group", k),
        now=NOW,
    )

    fetch = _mailbox_messages()[2]
    frame = mb.encode_mailbox_frame(fetch)
    bad(
        "mailbox: fetch for another mailbox",
        "mailbox",
        frame,
        "wrong-mailbox",
        mailbox="12D3KooWOther",
        now=NOW,
    )
    bad(
        "mailbox: stale fetch",
        "mailbox",
        frame,
        "stale-request",
        mailbox=MAILBOX_PEER,
        now=NOW + 600_000,
    )
    fvalue = cbor.decode(frame, max_size=MAX_FRAME)
    payload = cbor.decode(fvalue["p"], max_size=MAX_FRAME)
    bad(
        "mailbox: fetch with a bad signature",
        "mailbox",
        cbor.encode({**fvalue, "p": cbor.encode({**payload, "max": 51})}),
        "bad-signature",
        mailbox=MAILBOX_PEER,
        now=NOW,
    )
    # A tag that is not an Ed25519 point: a mailbox stores for it (it cannot tell), a
    # fetch by it fails its signature check, after the mailbox and time checks.
    not_a_point = bytes(31) + b"\x80"
    odd = mb.MailboxFetch(tag=not_a_point, mailbox=MAILBOX_PEER, ts=NOW, limit=5, sig=bytes(64))
    bad(
        "mailbox: fetch by a tag that is not a curve point",
        "mailbox",
        mb.encode_mailbox_frame(odd),
        "bad-signature",
        mailbox=MAILBOX_PEER,
        now=NOW,
    )
    bad(
        "mailbox: ... and for another mailbox",
        "mailbox",
        mb.encode_mailbox_frame(odd),
        "wrong-mailbox",
        mailbox="12D3KooWOther",
        now=NOW,
    )
    bad(
        "mailbox: unknown kind",
        "mailbox",
        cbor.encode({**fvalue, "k": "mbox.future"}),
        "unknown-kind",
        mailbox=MAILBOX_PEER,
        now=NOW,
    )
    blob = bytearray(sealed_blob())
    blob[40] ^= 0x01
    bad(
        "mailbox blob: one bit flipped",
        "mailbox-blob",
        bytes(blob),
        "bad-seal",
        tag_seed=TAG_SEED.hex(),
    )
    other_tag = blake2b(b"someone-else", size=32, person=b"p2pchat-vectors")
    bad(
        "mailbox blob: another recipient's tag key",
        "mailbox-blob",
        sealed_blob(),
        "bad-seal",
        tag_seed=other_tag.hex(),
    )
    return vectors  # fmt: skip


# --- files ---------------------------------------------------------------------------------


VALID_NOTE = (
    "Decode vectors: each is valid for its `check` pipeline only. An `event` vector also "
    "says under `engine` what a group replica holding the genesis and the event vectors "
    "before it (in file order, at now + 1 day) does with it (groups.md §2): several are "
    "refused there (content kinds unsealed in a private group, a live comment, which is "
    "no log entry). Engine-valid material: vectors/groups/."
)


def _annotate_engine(vectors: list[dict[str, Any]]) -> None:
    from p2pchat.protocol.group_engine import GroupEngine
    from p2pchat.protocol.group_log import GroupError

    engine = GroupEngine.from_genesis(GENESIS)
    verdicts: dict[int, str] = {}
    for index, vector in enumerate(vectors):
        data = bytes.fromhex(vector["hex"])
        if vector["check"] != "event" or data == GENESIS:
            continue
        try:
            result = engine.receive(data, now=NOW + 86_400_000)
        except (GroupError, WireError) as exc:
            verdicts[index] = f"refused: {exc.reason}"
            continue
        verdicts[index] = "accepted" if result.accepted else "buffered: an ancestor was refused"
    for index, verdict in verdicts.items():
        if verdict == "accepted":
            effective = engine.is_effective(
                decode_event(bytes.fromhex(vectors[index]["hex"])).event_id
            )
            verdict = "accepted, effective" if effective else "accepted, void"
        vectors[index]["engine"] = verdict
    for vector in vectors:
        if vector["check"] == "event" and bytes.fromhex(vector["hex"]) == GENESIS:
            vector["engine"] = "the genesis (group id = its event id)"


def _dump(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def generate() -> dict[str, str]:
    files: dict[str, str] = {}
    valid = valid_vectors()
    for vector in valid:
        run_check(vector["check"], bytes.fromhex(vector["hex"]), vector)
        if vector["check"] == "mailbox-blob":
            opened = mb.open_for_tag(bytes.fromhex(vector["hex"]), tag_key=TAG_KEY)
            vector["opened"] = {"hex": opened.hex(), **_decoded("envelope", opened)}
        elif vector["check"] != "frame":
            vector.update(_decoded(vector["check"], bytes.fromhex(vector["hex"])))
    invalid = invalid_vectors()
    for vector in invalid:
        try:
            run_check(vector["check"], bytes.fromhex(vector["hex"]), vector)
        except WireError as exc:
            if exc.reason != vector["reason"]:
                raise AssertionError(f"{vector['name']}: got {exc.reason}") from exc
        else:
            raise AssertionError(f"invalid vector accepted: {vector['name']}")
    _annotate_engine(valid)
    files["wire/valid.json"] = _dump({"now": NOW, "note": VALID_NOTE, "vectors": valid})
    files["wire/invalid.json"] = _dump({"now": NOW, "vectors": invalid})
    # The CDDL is generated from the same classes, so `make vectors` refreshes it too.
    for name, text in schema_files().items():
        files[f"../schemas/{name}"] = text
    return files


if __name__ == "__main__":
    for rel, text in generate().items():
        (HERE / rel).parent.mkdir(parents=True, exist_ok=True)
        (HERE / rel).write_text(text)
        print(f"wrote protocol-spec/vectors/{rel}")

"""Behaviour of the wire codec: sealing, decoding, verification, forward compatibility,
hash-chained runs, DHT records and mailbox authorisation."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from nacl.signing import SigningKey

from p2pchat.errors import LocalProtocolError, WireError
from p2pchat.protocol import mailbox as mb
from p2pchat.protocol import signing
from p2pchat.protocol.content import Content, ImageBody, MediaRef, parse_known_body
from p2pchat.protocol.dm_messages import ContactRequest, DmAck, DmPlaintext
from p2pchat.protocol.envelope import decode_envelope, decode_message, seal
from p2pchat.protocol.framing import FrameDecoder, encode_frame
from p2pchat.protocol.group_events import (
    Genesis,
    GroupDescriptor,
    InnerEvent,
    Post,
    Rules,
    decode_event,
    sign_event,
)
from p2pchat.protocol.records import (
    PrekeyRecord,
    dht_key,
    select_record,
    sign_record,
    topic_key,
    validate_record,
)
from p2pchat.protocol.sync_messages import Run, authenticate_run
from p2pchat_crypto import cbor
from tests.conftest import DeterministicRng

SEED = DeterministicRng("codec-tests")(32)
KEY = SigningKey(SEED)
OTHER = SigningKey(DeterministicRng("other")(32))
ACCOUNT = b"A" * 32
TEXT = Content(type="p2pchat/text", body={}, text="hi")


def _value(data: bytes) -> dict[str, Any]:
    value: dict[str, Any] = cbor.decode(data, max_size=len(data))
    return value


def test_seal_decode_verify_open_round_trip(now: int) -> None:
    message = ContactRequest(request_id=b"r" * 16, account=ACCOUNT, name="Ann", note="hello")
    frame = seal(message, signing_key=KEY, now=now)
    env = decode_envelope(frame)
    assert (env.kind, env.sender, env.ts) == ("contact.request", bytes(KEY.verify_key), now)
    env.verify()
    assert env.open() == message
    assert decode_message(frame) == (env, message)


def test_decoding_does_not_verify_and_verify_catches_a_bad_signature(now: int) -> None:
    value = _value(seal(DmAck(ids=(b"i" * 16,)), signing_key=KEY, now=now))
    value["t"] += 1
    env = decode_envelope(cbor.encode(value))  # cheap step succeeds
    with pytest.raises(WireError) as info:
        env.verify()
    assert info.value.reason == "bad-signature"


def test_an_unknown_field_is_ignored_but_covered_by_the_signature(now: int) -> None:
    value = _value(seal(DmAck(ids=(b"i" * 16,)), signing_key=KEY, now=now))
    del value["sig"]
    value["zz-new"] = [1, 2]
    value["sig"] = signing.sign_map("envelope", value, KEY)
    env = decode_envelope(cbor.encode(value))
    env.verify()
    assert env.open() == DmAck(ids=(b"i" * 16,))
    value["zz-new"] = [1, 3]
    with pytest.raises(WireError, match="bad-signature"):
        decode_envelope(cbor.encode(value)).verify()


def test_a_newer_version_is_reported_before_any_other_field() -> None:
    with pytest.raises(WireError) as info:
        decode_envelope(cbor.encode({"v": 2, "k": 7, "future": True}))
    assert info.value.reason == "unsupported-version"


def test_seal_refuses_invalid_or_foreign_messages_without_leaking_the_key(now: int) -> None:
    with pytest.raises(LocalProtocolError) as info:
        seal(DmAck(ids=()), signing_key=KEY, now=now)
    assert SEED.hex() not in str(info.value)
    assert repr(SEED) not in str(info.value)
    with pytest.raises(LocalProtocolError):
        seal(TEXT, signing_key=KEY, now=now)


def test_framed_envelope_survives_arbitrary_chunking(now: int) -> None:
    frames = [seal(DmAck(ids=(bytes([i]) * 16,)), signing_key=KEY, now=now + i) for i in range(3)]
    stream = b"".join(encode_frame(f) for f in frames)
    decoder = FrameDecoder()
    got: list[bytes] = []
    for i in range(0, len(stream), 7):
        decoder.feed(stream[i : i + 7])
        got.extend(decoder.frames())
    assert got == frames
    assert [decode_envelope(f).open() for f in got] == [decode_envelope(f).open() for f in frames]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"ids": [b"i" * 16], "zz": 1}, None),
        ({"ids": [True]}, "wrong-type"),
        ({"ids": "x"}, "wrong-type"),
        ({"ids": [b"i" * 15]}, "bad-length"),
        ({"ids": [b"i" * 16] * 257}, "bad-length"),
        ({"ids": [b"i" * 16], 1: 2}, "key-type"),
        ({}, "missing-field"),
    ],
)
def test_field_checks(value: dict[Any, Any], reason: str | None) -> None:
    if reason is None:
        assert DmAck.from_value(value) == DmAck(ids=(b"i" * 16,))
        return
    with pytest.raises(WireError) as info:
        DmAck.from_value(value)
    assert info.value.reason == reason


def test_integers_stay_within_2_to_the_53_and_booleans_are_not_integers() -> None:
    base = {"id": b"i" * 16, "c": TEXT.to_value()}
    assert DmPlaintext.from_value({**base, "ts": 2**53 - 1}).ts == 2**53 - 1
    for ts, reason in ((2**53, "out-of-range"), (True, "wrong-type"), (-1, "out-of-range")):
        with pytest.raises(WireError) as info:
            DmPlaintext.from_value({**base, "ts": ts})
        assert info.value.reason == reason


def test_content_of_an_unknown_type_keeps_its_fallback_text() -> None:
    app = Content(type="com.example/recipe", body={"serves": 4}, text="Pasta for 4")
    decoded = Content.from_bytes(app.to_bytes(), max_size=1000)
    assert (decoded.known, decoded.text, parse_known_body(decoded)) == (False, "Pasta for 4", None)
    image = Content(type="p2pchat/image", body={"media": {"h": b"short"}}, text="[image]")
    with pytest.raises(WireError):
        parse_known_body(image)
    ref = MediaRef(hash=b"h" * 32, mime="image/png", size=10)
    good = Content(type="p2pchat/image", body=ImageBody(media=ref).to_value(), text="[image]")
    assert parse_known_body(good) == ImageBody(media=ref)


# --- group events and runs -----------------------------------------------------------------


def _genesis(now: int, key: SigningKey = KEY) -> bytes:
    desc = GroupDescriptor(
        kind="public",
        name="g",
        tags=(),
        rules=Rules(join="open", post="member", invite="member", slow=0),
    )
    body = Genesis(descriptor=desc, nonce=b"n" * 16)
    return sign_event(
        body, signing_key=key, account=ACCOUNT, group=None, seq=1, prev=None, lamport=1, now=now
    )


def _chain(now: int, length: int) -> list[bytes]:
    events = [_genesis(now)]
    group = decode_event(events[0]).event_id
    for seq in range(2, length + 1):
        post = Post(content=Content(type="p2pchat/text", body={}, text=str(seq)))
        prev = decode_event(events[-1]).event_id
        events.append(
            sign_event(
                post,
                signing_key=KEY,
                account=ACCOUNT,
                group=group,
                seq=seq,
                prev=prev,
                lamport=seq,
                now=now + seq,
            )
        )
    return events


def test_a_run_is_authenticated_with_one_signature_verification(
    now: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = _chain(now, 6)
    group = decode_event(events[0]).event_id
    calls = []
    real = signing.verify_signature

    def counting(message: bytes, signature: bytes, public_key: bytes) -> None:
        calls.append(signature)
        real(message, signature, public_key)

    monkeypatch.setattr("p2pchat.protocol.group_events.verify_signature", counting)
    run = Run(device=bytes(KEY.verify_key), events=tuple(events))
    got = authenticate_run(run, group=group)
    assert [e.seq for e in got] == [1, 2, 3, 4, 5, 6]
    assert calls == [got[-1].sig]


def test_a_run_continues_the_receivers_head(now: int) -> None:
    events = _chain(now, 5)
    first = [decode_event(e) for e in events]
    group, device = first[0].event_id, bytes(KEY.verify_key)
    tail = Run(device=device, events=tuple(events[2:]))
    assert len(authenticate_run(tail, group=group, after=(2, first[1].event_id))) == 3
    with pytest.raises(WireError, match="broken-chain"):
        authenticate_run(tail, group=group, after=(2, first[0].event_id))
    with pytest.raises(WireError, match="broken-chain"):
        authenticate_run(Run(device=device, events=tuple(events[2:])), group=group)


def test_changing_an_intermediate_signature_breaks_the_chain(now: int) -> None:
    """The event id covers the signature, so even unverified middle signatures are bound."""
    events = _chain(now, 3)
    middle = _value(events[1])
    middle["sig"] = bytes(64)
    run = Run(device=bytes(KEY.verify_key), events=(events[0], cbor.encode(middle), events[2]))
    with pytest.raises(WireError, match="broken-chain"):
        authenticate_run(run, group=decode_event(events[0]).event_id)


def test_sealed_inner_events_cannot_hold_structural_kinds() -> None:
    inner = InnerEvent(kind="post", body=Post(content=TEXT).to_value())
    assert inner.parsed() == Post(content=TEXT)
    with pytest.raises(WireError, match="bad-value"):
        InnerEvent(kind="genesis", body={}).parsed()
    assert InnerEvent(kind="x.later", body={"a": 1}).parsed() is None


# --- records ---------------------------------------------------------------------------------


def _prekeys(seq: int, expires: int, key: SigningKey = KEY) -> bytes:
    return sign_record(
        PrekeyRecord(bundle=b"b" * 40), ns="prekeys", key=bytes(KEY.verify_key), seq=seq,
        expires=expires, signing_key=key,
    )  # fmt: skip


def test_select_prefers_the_newest_valid_record(now: int) -> None:
    where = dht_key("prekeys", bytes(KEY.verify_key))
    old, new, expired = _prekeys(1, now + 10_000), _prekeys(2, now + 5_000), _prekeys(9, now)
    forged = _prekeys(7, now + 10_000, key=OTHER)
    assert validate_record(where, new, now=now).seq == 2
    assert select_record(where, [old, expired, new, forged], now=now) == 2
    with pytest.raises(WireError, match="no-valid-record"):
        select_record(where, [expired, forged], now=now)


def test_topic_keys_fold_case() -> None:
    assert topic_key("Hiking") == topic_key("hiking") != topic_key("hiking2")


def test_sign_record_refuses_a_body_of_another_namespace(now: int) -> None:
    with pytest.raises(LocalProtocolError):
        sign_record(TEXT, ns="prekeys", key=ACCOUNT, seq=1, expires=now, signing_key=KEY)


# --- mailbox ---------------------------------------------------------------------------------


def test_a_fetch_signature_does_not_authorise_a_delete(now: int) -> None:
    tag_key = SigningKey(DeterministicRng("tag")(32))
    fetch = mb.sign_request(
        mb.MailboxFetch(tag=b"", mailbox="box", ts=now, limit=10, sig=b""), tag_key=tag_key
    )
    assert isinstance(fetch, mb.MailboxFetch)
    decoded = mb.decode_mailbox_frame(mb.encode_mailbox_frame(fetch))
    assert decoded == fetch
    mb.verify_request(fetch, mailbox="box", now=now + mb.AUTH_WINDOW_MS)
    delete = mb.MailboxDelete(tag=fetch.tag, mailbox="box", ts=now, ids=(b"i" * 16,), sig=fetch.sig)
    with pytest.raises(WireError, match="bad-signature"):
        mb.verify_request(delete, mailbox="box", now=now)
    with pytest.raises(WireError, match="stale-request"):
        mb.verify_request(fetch, mailbox="box", now=now + mb.AUTH_WINDOW_MS + 1)


def test_decoded_objects_are_immutable(now: int) -> None:
    env = decode_envelope(seal(DmAck(ids=(b"i" * 16,)), signing_key=KEY, now=now))
    with pytest.raises(dataclasses.FrozenInstanceError):
        env.kind = "dm.msg"  # type: ignore[misc]
    assert "raw=" not in repr(env)


def test_sign_event_refuses_an_event_our_decoder_would_reject(now: int) -> None:
    with pytest.raises(LocalProtocolError):  # seq 2 without prev
        sign_event(Post(content=TEXT), signing_key=KEY, account=ACCOUNT, group=ACCOUNT,
                   seq=2, prev=None, lamport=2, now=now)  # fmt: skip


def test_decode_record_refuses_an_unknown_namespace() -> None:
    from p2pchat.protocol.records import decode_record

    with pytest.raises(WireError, match="wrong-namespace"):
        decode_record(b"\xa0", ns="nope")


@pytest.mark.parametrize(
    "module",
    ["codec", "content", "dm_messages", "envelope", "group_events", "mailbox", "records",
     "schema", "signing", "sync_messages"],
)  # fmt: skip
def test_public_surface_is_declared(module: str) -> None:
    import importlib

    mod = importlib.import_module(f"p2pchat.protocol.{module}")
    assert mod.__all__
    missing = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert not missing


def test_a_sealed_blob_is_libsodium_crypto_box_seal(now: int, rng: DeterministicRng) -> None:
    from nacl.public import SealedBox

    tag_key = SigningKey(DeterministicRng("tag")(32))
    envelope = seal(DmAck(ids=(b"i" * 16,)), signing_key=KEY, now=now)
    blob = mb.seal_for_tag(envelope, tag=bytes(tag_key.verify_key), rng=rng)
    assert len(blob) == len(envelope) + mb.SEAL_OVERHEAD
    assert envelope not in blob
    assert SealedBox(tag_key.to_curve25519_private_key()).decrypt(blob) == envelope
    assert mb.open_for_tag(blob, tag_key=tag_key) == envelope
    with pytest.raises(WireError, match="bad-seal"):
        mb.open_for_tag(blob, tag_key=OTHER)
    with pytest.raises(WireError, match="bad-seal"):
        mb.open_for_tag(blob[:20], tag_key=tag_key)
    with pytest.raises(WireError, match="bad-key"):
        mb.seal_for_tag(envelope, tag=b"\x01" * 31, rng=rng)


def test_topic_tags_fold_per_code_point_without_case_folding() -> None:
    from p2pchat.protocol.records import fold_tag

    assert fold_tag("Straße") == "straße" != fold_tag("STRASSE")
    assert fold_tag("ΟΔΟΣ") == "οδοσ"  # no final-sigma context
    assert fold_tag("ﬁlm") == "film"
    assert topic_key("Café") == topic_key("Cafe\u0301")


def test_a_tag_with_an_unassigned_code_point_is_not_published() -> None:
    from p2pchat.protocol.records import TopicEntry, TopicRecord, sign_record

    body = TopicRecord(
        tag="x\U000e0080", groups=(TopicEntry(group=bytes(32), name="g", kind="public"),)
    )
    with pytest.raises(LocalProtocolError):
        sign_record(
            body,
            ns="topic",
            key=topic_key(body.tag),
            seq=1,
            expires=2,
            signing_key=SigningKey(bytes(32)),
        )

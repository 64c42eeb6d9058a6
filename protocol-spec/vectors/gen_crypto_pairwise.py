"""Pairwise-crypto vectors (protocol-spec/vectors/crypto/pairwise-*.json).

    python protocol-spec/vectors/generate.py   # writes these files (and the other sets)

Deterministic: every secret comes from a SHA-256 counter generator over a fixed label,
every time is fixed. Every secret *input* is written out, so another implementation can
rebuild the same objects without our generator. For the ratchet conversation, each
encryption lists the exact random bytes it consumed (``randomness``), in the order of
``crypto.md`` ("Randomness consumed"), so no implementation has to mimic ours.

Files: ``pairwise-identity.json`` (accounts, fingerprints, safety numbers, device
certificates), ``pairwise-prekey-bundle.json``, ``pairwise-x3dh.json`` and
``pairwise-ratchet.json`` (a conversation with skipped, out-of-order, duplicate,
tampered and replayed messages). Invalid cases name the expected error class of
``p2pchat_crypto.errors``. Hex strings stand for bytes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable
from typing import Any

from p2pchat_crypto import errors
from p2pchat_crypto._keys import ed25519_public, x25519_dh, x25519_public
from p2pchat_crypto.identity import (
    Account,
    Device,
    DeviceCertificate,
    PublicIdentity,
    safety_number,
)
from p2pchat_crypto.prekeys import PrekeyBundle, SignedPrekey
from p2pchat_crypto.ratchet import Session
from p2pchat_crypto.replay import ReplayCache
from p2pchat_crypto.x3dh import InitialMessage, initiator_agree, responder_agree

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY = 86_400_000
PREKEY_EXPIRES = NOW + 30 * DAY
DEVICE_EXPIRES = NOW + 365 * DAY
# A point of order 8 on Curve25519.
LOW_ORDER_POINT = bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")


class CounterRng:
    """``rng(n)``: SHA-256(label || counter u64 BE) blocks, concatenated. Not secret."""

    def __init__(self, label: str) -> None:
        self._label = label.encode()
        self._counter = 0
        self.log: list[bytes] = []

    def __call__(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(self._label + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
        self.log.append(out[:n])
        return out[:n]

    def take_log(self) -> bytes:
        taken, self.log = b"".join(self.log), []
        return taken


def secret(label: str) -> bytes:
    return CounterRng(label)(32)


def account(name: str) -> Account:
    return Account(
        signing_seed=secret(f"{name}/account-signing"),
        identity_dh_secret=secret(f"{name}/identity-dh"),
    )


def device(owner: Account, name: str, *, expires: int | None) -> Device:
    """A device with a fixed seed, certified by ``owner`` at NOW."""
    seed = secret(f"{name}/device")
    certificate = owner.certify_device(ed25519_public(seed), now=NOW, expires=expires)
    return Device(signing_seed=seed, certificate=certificate)


def account_json(name: str, acc: Account) -> dict[str, str]:
    return {
        "signing_seed": secret(f"{name}/account-signing").hex(),
        "identity_dh_secret": acc.identity_dh_secret().hex(),
    }


def expect_error(error: str, action: Callable[[], object]) -> None:
    """Generation stops if an invalid vector does not fail exactly as it claims."""
    try:
        action()
    except errors.CryptoError as exc:
        if type(exc).__name__ != error:
            raise AssertionError(f"expected {error}, got {type(exc).__name__}: {exc}") from None
        return
    raise AssertionError(f"expected {error}, nothing raised")


def _resigned(bundle: PrekeyBundle, owner: Account, **changes: Any) -> PrekeyBundle:
    changed = dataclasses.replace(bundle, **changes)
    return dataclasses.replace(changed, signature=owner.sign(changed.signed_message()))


# -- identity ------------------------------------------------------------------------


def identity_vectors() -> dict[str, Any]:
    alice, bob = account("alice"), account("bob")
    accounts = []
    for name, acc in (("alice", alice), ("bob", bob)):
        accounts.append(
            {
                "name": name,
                "secrets": account_json(name, acc),
                "account_key": acc.account_key.hex(),
                "identity_dh_key": acc.identity_dh_key.hex(),
                "identity_dh_signature": acc.identity_dh_signature.hex(),
                "public_identity": acc.public().encode().hex(),
                "fingerprint": acc.fingerprint,
            }
        )
    certificates = []
    for owner_name, owner, name, expires in (
        ("alice", alice, "alice-laptop", None),
        ("bob", bob, "bob-phone", DEVICE_EXPIRES),
    ):
        dev = device(owner, name, expires=expires)
        dev.certificate.verify(now=NOW)
        certificates.append(
            {
                "name": name,
                "account": owner_name,
                "device_seed": dev.signing_seed().hex(),
                "created": NOW,
                "expires": expires,
                "device_key": dev.public_key.hex(),
                "signed_message": dev.certificate.signed_message().hex(),
                "encoded": dev.certificate.encode().hex(),
                "valid_at": NOW,
            }
        )
    bob_cert = device(bob, "bob-phone", expires=DEVICE_EXPIRES).certificate
    forged = dataclasses.replace(bob_cert, device_key=alice.account_key)
    invalid: list[dict[str, Any]] = [
        {"name": "certificate-changed-device-key", "type": "device-certificate",
         "encoded": forged.encode().hex(), "now": NOW, "error": "SignatureError"},
        {"name": "certificate-expired", "type": "device-certificate",
         "encoded": bob_cert.encode().hex(), "now": DEVICE_EXPIRES, "error": "ExpiredError"},
        {"name": "certificate-from-the-future", "type": "device-certificate",
         "encoded": bob_cert.encode().hex(), "now": NOW - 11 * 60 * 1000,
         "error": "ExpiredError"},
        {"name": "certificate-truncated-signature", "type": "device-certificate",
         "encoded": bob_cert.encode()[:-1].hex(), "now": NOW, "error": "DecodeError"},
        {"name": "identity-dh-key-not-certified", "type": "public-identity",
         "encoded": dataclasses.replace(alice.public(), identity_dh_key=bob.identity_dh_key)
         .encode().hex(), "now": NOW, "error": "SignatureError"},
        {"name": "identity-trailing-byte", "type": "public-identity",
         "encoded": (alice.public().encode() + b"\x00").hex(), "now": NOW,
         "error": "DecodeError"},
    ]  # fmt: skip
    for case in invalid:
        expect_error(case["error"], functools.partial(check_object, case))
    return {
        "description": "Accounts, fingerprints, safety numbers and device certificates.",
        "accounts": accounts,
        "safety_numbers": [
            {
                "account_key_a": alice.account_key.hex(),
                "account_key_b": bob.account_key.hex(),
                "safety_number": safety_number(alice.account_key, bob.account_key),
            }
        ],
        "device_certificates": certificates,
        "invalid": invalid,
    }


def check_object(case: dict[str, Any]) -> None:
    """Decode and verify one invalid-object case (shared with the vector test)."""
    data = bytes.fromhex(case["encoded"])
    options = case.get("options", {})
    if case["type"] == "device-certificate":
        DeviceCertificate.decode(data).verify(now=case["now"])
    elif case["type"] == "public-identity":
        PublicIdentity.decode(data).verify()
    elif case["type"] == "prekey-bundle":
        account_key = options.get("account_key")
        PrekeyBundle.decode(data).verify(
            now=case["now"],
            account_key=None if account_key is None else bytes.fromhex(account_key),
            min_sequence=options.get("min_sequence"),
        )
    else:
        raise ValueError(case["type"])


# -- prekey bundle -------------------------------------------------------------------


def bob_setup() -> tuple[Account, Device, SignedPrekey, PrekeyBundle]:
    bob = account("bob")
    bob_device = device(bob, "bob-phone", expires=DEVICE_EXPIRES)
    prekey = SignedPrekey(
        prekey_id=7, secret=secret("bob/prekey-7"), created=NOW, expires=PREKEY_EXPIRES
    )
    return bob, bob_device, prekey, PrekeyBundle.create(bob, bob_device.certificate, prekey,
                                                         sequence=3)  # fmt: skip


def bundle_vectors() -> dict[str, Any]:
    bob, bob_device, prekey, bundle = bob_setup()
    alice = account("alice")
    bundle.verify(now=NOW, account_key=bob.account_key, min_sequence=3)
    alice_device = device(alice, "alice-laptop", expires=None)
    cases: list[tuple[str, PrekeyBundle | bytes, int, dict[str, Any], str]] = [
        ("bad-bundle-signature", dataclasses.replace(bundle, sequence=4), NOW, {},
         "SignatureError"),
        ("prekey-expired", bundle, PREKEY_EXPIRES, {}, "ExpiredError"),
        ("device-certificate-expired", bundle, DEVICE_EXPIRES, {}, "ExpiredError"),
        ("certificate-of-another-account",
         _resigned(bundle, bob, device_certificate=alice_device.certificate), NOW, {},
         "SignatureError"),
        ("wrong-prekey-type", _resigned(bundle, bob, prekey_type="ed25519"), NOW, {},
         "VerificationError"),
        ("wrong-prekey-length", _resigned(bundle, bob, prekey=b"\x05" * 33), NOW, {},
         "VerificationError"),
        ("low-order-prekey", _resigned(bundle, bob, prekey=LOW_ORDER_POINT), NOW, {},
         "VerificationError"),
        ("stale-sequence", bundle, NOW, {"min_sequence": 4}, "StaleError"),
        ("another-account", bundle, NOW, {"account_key": alice.account_key.hex()},
         "VerificationError"),
        ("truncated", bundle.encode()[:-3], NOW, {}, "DecodeError"),
    ]  # fmt: skip
    invalid = []
    for name, value, now, options, error in cases:
        encoded = value if isinstance(value, bytes) else value.encode()
        case = {"name": name, "type": "prekey-bundle", "encoded": encoded.hex(), "now": now,
                "options": options, "error": error}  # fmt: skip
        expect_error(error, functools.partial(check_object, case))
        invalid.append(case)
    return {
        "description": "A prekey bundle signed by Bob's account, and invalid variants.",
        "bob": account_json("bob", bob),
        "bob_device_seed": bob_device.signing_seed().hex(),
        "bob_device_expires": DEVICE_EXPIRES,
        "prekey": {"prekey_id": 7, "secret": prekey.secret_key().hex(), "created": NOW,
                   "expires": PREKEY_EXPIRES, "public_key": prekey.public_key.hex()},
        "sequence": 3,
        "signed_message": bundle.signed_message().hex(),
        "encoded": bundle.encode().hex(),
        "valid_at": NOW,
        "invalid": invalid,
    }  # fmt: skip


# -- X3DH ----------------------------------------------------------------------------


def x3dh_vectors() -> dict[str, Any]:
    alice = account("alice")
    bob, _bob_device, prekey, _bundle = bob_setup()
    alice_device = device(alice, "alice-laptop", expires=None)
    cases = []
    for name, device_key in (("without-device", None), ("with-device", alice_device.public_key)):
        ephemeral_secret = secret(f"alice/ephemeral/{name}")
        ephemeral_key = x25519_public(ephemeral_secret)
        ours = initiator_agree(
            alice,
            responder=bob.public(),
            prekey=prekey.public_key,
            prekey_id=prekey.prekey_id,
            ephemeral_secret=ephemeral_secret,
            ephemeral_key=ephemeral_key,
            initiator_device_key=device_key,
        )
        theirs = responder_agree(
            bob,
            prekey_secret=prekey.secret_key(),
            prekey_id=prekey.prekey_id,
            initiator=alice.public(),
            ephemeral_key=ephemeral_key,
            initiator_device_key=device_key,
        )
        assert ours == theirs
        cases.append(
            {
                "name": name,
                "alice": account_json("alice", alice),
                "bob": account_json("bob", bob),
                "prekey_id": prekey.prekey_id,
                "prekey_secret": prekey.secret_key().hex(),
                "ephemeral_secret": ephemeral_secret.hex(),
                "initiator_device_key": None if device_key is None else device_key.hex(),
                "ephemeral_key": ephemeral_key.hex(),
                "dh1": x25519_dh(alice.identity_dh_secret(), prekey.public_key).hex(),
                "dh2": x25519_dh(ephemeral_secret, bob.identity_dh_key).hex(),
                "dh3": x25519_dh(ephemeral_secret, prekey.public_key).hex(),
                "root_key": ours.root_key.hex(),
                "initiator_header_key": ours.initiator_header_key.hex(),
                "responder_next_header_key": ours.responder_next_header_key.hex(),
                "associated_data": ours.associated_data.hex(),
                "session_id": ours.session_id.hex(),
            }
        )
    return {"description": "X3DH outputs for Alice -> Bob (no one-time prekey).", "cases": cases}


# -- ratchet conversation ------------------------------------------------------------


def ratchet_vectors() -> dict[str, Any]:
    alice = account("alice")
    alice_device = device(alice, "alice-laptop", expires=None)
    bob, _bob_device, prekey, bundle = bob_setup()
    rng = CounterRng("conversation")
    alice_session, initial = Session.initiate(
        alice, bundle, rng, now=NOW, device=alice_device, plaintext=b"hello bob"
    )
    initiate = {"randomness": rng.take_log().hex(), "plaintext": b"hello bob".hex(),
                "initial_message": initial.encode().hex()}  # fmt: skip
    cache = ReplayCache()
    bob_session, text = Session.respond(bob, prekey, initial.encode(), cache, now=NOW)
    assert text == b"hello bob"
    sessions = {"alice": alice_session, "bob": bob_session}
    wires: dict[str, bytes] = {}
    steps: list[dict[str, Any]] = []

    def send(party: str, label: str, plaintext: bytes) -> None:
        wire = sessions[party].encrypt(plaintext, rng)
        wires[label] = wire
        steps.append({"op": "encrypt", "party": party, "label": label,
                      "plaintext": plaintext.hex(), "randomness": rng.take_log().hex(),
                      "wire": wire.hex()})  # fmt: skip

    def receive(party: str, label: str, plaintext: bytes) -> None:
        assert sessions[party].decrypt(wires[label]) == plaintext
        steps.append({"op": "decrypt", "party": party, "label": label,
                      "plaintext": plaintext.hex()})  # fmt: skip

    def refuse(party: str, name: str, wire: bytes, error: str) -> None:
        before = sessions[party].to_bytes()
        expect_error(error, lambda: sessions[party].decrypt(wire))
        assert sessions[party].to_bytes() == before
        steps.append({"op": "decrypt-fails", "party": party, "name": name, "wire": wire.hex(),
                      "error": error})  # fmt: skip

    send("alice", "a1", b"are you there?")  # still an initial message: not acknowledged
    receive("bob", "a1", b"are you there?")
    send("bob", "b0", b"yes")  # Bob's first reply: DH ratchet step
    send("bob", "b1", b"")
    send("bob", "b2", b"x" * 300)  # two padding blocks
    receive("alice", "b2", b"x" * 300)  # skips b0, b1
    receive("alice", "b0", b"yes")  # out of order, from the skipped keys
    refuse("alice", "duplicate-b2", wires["b2"], "DuplicateMessageError")
    send("alice", "a2", b"new chain")
    send("alice", "a3", b"and another")
    header_flip = bytearray(wires["a3"])
    header_flip[10] ^= 1  # inside the encrypted header
    refuse("bob", "tampered-header", bytes(header_flip), "AuthenticationError")
    body_flip = bytearray(wires["a3"])
    body_flip[-1] ^= 1  # the body's tag
    refuse("bob", "tampered-body", bytes(body_flip), "AuthenticationError")
    receive("bob", "a3", b"and another")
    receive("bob", "a2", b"new chain")
    refuse("bob", "duplicate-a2", wires["a2"], "DuplicateMessageError")
    send("bob", "b3", b"late reply")
    receive("alice", "b3", b"late reply")  # previous-chain key b1 still skipped
    receive("alice", "b1", b"")
    refuse("alice", "not-a-message", b"\x80", "DecodeError")

    respond_failures = []
    mallory = account("mallory")
    relabelled = dataclasses.replace(initial, initiator=mallory.public(), initiator_device=None)
    foreign_device = dataclasses.replace(initial, initiator=mallory.public())
    for name, message, fresh, error in (
        ("replayed-initial-message", initial.encode(), False, "ReplayError"),
        ("identity-mismatch", relabelled.encode(), True, "AuthenticationError"),
        ("device-of-another-account", foreign_device.encode(), True, "SignatureError"),
        ("expired-prekey", initial.encode(), True, "ExpiredError"),
    ):
        now = PREKEY_EXPIRES if name == "expired-prekey" else NOW
        used = ReplayCache() if fresh else cache
        expect_error(error, functools.partial(Session.respond, bob, prekey, message, used, now=now))
        respond_failures.append(
            {
                "name": name,
                "initial_message": message.hex(),
                "fresh_replay_cache": fresh,
                "now": now,
                "error": error,
            }
        )
    assert isinstance(InitialMessage.decode(initial.encode()), InitialMessage)
    return {
        "description": (
            "Alice (with device alice-laptop) starts a session with Bob's bundle "
            "(pairwise-prekey-bundle.json) at `now`, then both follow `steps` in order. "
            "Each encrypt consumes exactly `randomness`; each decrypt must give `plaintext`; "
            "each decrypt-fails must raise `error` and leave the session unchanged. "
            "Bob accepts the initial message with an empty replay cache, which is then "
            "used by the `respond_failures` that do not ask for a fresh one."
        ),
        "now": NOW,
        "alice": account_json("alice", alice),
        "alice_device_seed": alice_device.signing_seed().hex(),
        "bob": account_json("bob", bob),
        "bundle": bundle.encode().hex(),
        "prekey_secret": prekey.secret_key().hex(),
        "initiate": initiate,
        "steps": steps,
        "respond_failures": respond_failures,
    }


def _dump(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, indent=2) + "\n"


def generate() -> dict[str, str]:
    return {
        "crypto/pairwise-identity.json": _dump(identity_vectors()),
        "crypto/pairwise-prekey-bundle.json": _dump(bundle_vectors()),
        "crypto/pairwise-x3dh.json": _dump(x3dh_vectors()),
        "crypto/pairwise-ratchet.json": _dump(ratchet_vectors()),
    }

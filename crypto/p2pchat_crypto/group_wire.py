"""Byte-level building blocks of group sender keys: the chain step, key expansion and codecs.

Private to :mod:`p2pchat_crypto.group` (which is the public API). Everything here is a pure
function of its arguments, so the spec (``protocol-spec/crypto-group.md``) and the test
vectors can be checked against it one step at a time. Each function states the exact bytes
it hashes, signs or parses; the spec repeats them in prose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nacl import bindings
from nacl.exceptions import CryptoError as _NaclCryptoError

from . import cbor
from .errors import AuthenticationError, DecodeError, SignatureError
from .kdf import hkdf_sha256, hmac_sha256

__all__ = [
    "VERSION",
    "KEY_LEN",
    "SIGNATURE_LEN",
    "PAD_BLOCK",
    "MAX_PLAINTEXT_SIZE",
    "MAX_MESSAGE_SIZE",
    "MAX_DISTRIBUTION_SIZE",
    "MAX_INDEX",
    "MESSAGE_KEY_INFO",
    "MESSAGE_CONTEXT",
    "DISTRIBUTION_CONTEXT",
    "chain_step",
    "message_keys",
    "check_group_id",
    "check_sender",
    "check_uint",
    "WireMessage",
    "message_header",
    "encode_message",
    "decode_message",
    "WireDistribution",
    "distribution_signed_bytes",
    "encode_distribution",
    "decode_distribution",
    "sign",
    "verify",
    "seal_body",
    "open_body",
]

#: Version of the message and distribution formats (first array element on the wire).
VERSION = 1
KEY_LEN = 32
SIGNATURE_LEN = bindings.crypto_sign_BYTES
#: Plaintexts are padded (ISO/IEC 7816-4, ``sodium_pad``) to a multiple of this many bytes,
#: so ciphertext length reveals the plaintext length only to within one block.
PAD_BLOCK = 64
MAX_PLAINTEXT_SIZE = 64 * 1024
#: Cap checked before any parsing: padded plaintext + tag + header + signature + CBOR framing.
MAX_MESSAGE_SIZE = MAX_PLAINTEXT_SIZE + 1024
MAX_DISTRIBUTION_SIZE = 1024
MAX_GROUP_ID_LEN = 64
MAX_UINT = 2**64 - 1
#: The highest message index: one below MAX_UINT, so ``index + 1`` always fits in a pickle.
MAX_INDEX = MAX_UINT - 1

_CHAIN_SEED_MESSAGE = b"\x01"
_CHAIN_SEED_NEXT = b"\x02"
MESSAGE_KEY_INFO = b"p2pchat group message keys v1"
MESSAGE_CONTEXT = "p2pchat/group-message"
DISTRIBUTION_CONTEXT = "p2pchat/group-sender-key"
_AEAD_KEY_LEN = bindings.crypto_aead_xchacha20poly1305_ietf_KEYBYTES
_AEAD_NONCE_LEN = bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES


def chain_step(chain_key: bytes) -> tuple[bytes, bytes]:
    """Return ``(message_key_seed, next_chain_key)`` for one step of the hash chain.

    Two HMACs keyed by the current chain key, with one-byte inputs 0x01 and 0x02 (as in
    Signal's sender keys). HMAC is one-way, so holding chain key *i* reveals nothing
    about chain keys or message keys before *i*: that is the forward secrecy of the chain.
    """
    return hmac_sha256(chain_key, _CHAIN_SEED_MESSAGE), hmac_sha256(chain_key, _CHAIN_SEED_NEXT)


def message_keys(message_key_seed: bytes) -> tuple[bytes, bytes]:
    """Expand a message key seed into the AEAD ``(key, nonce)`` of exactly one message.

    Each seed encrypts exactly one message (the sender persists its advanced chain before
    sending), so a derived nonce is as good as a random one and keeps encryption a pure
    function of the session state, which makes the format testable byte for byte. HKDF's
    info string separates these keys from every other use of the chain's output.
    """
    okm = hkdf_sha256(
        message_key_seed, salt=b"", info=MESSAGE_KEY_INFO, length=_AEAD_KEY_LEN + _AEAD_NONCE_LEN
    )
    return okm[:_AEAD_KEY_LEN], okm[_AEAD_KEY_LEN:]


def check_group_id(group_id: object) -> bytes:
    if not isinstance(group_id, bytes) or not 1 <= len(group_id) <= MAX_GROUP_ID_LEN:
        raise DecodeError("group-id", f"a group id is 1 to {MAX_GROUP_ID_LEN} bytes")
    return group_id


def check_sender(sender: object) -> bytes:
    if not isinstance(sender, bytes) or len(sender) != KEY_LEN:
        raise DecodeError("sender", "a sender device key is 32 bytes")
    return sender


def check_uint(value: object, what: str, *, maximum: int = MAX_UINT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise DecodeError(what, f"{what} must be an integer from 0 to {maximum}")
    return value


def _check_bytes(value: object, length: int, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != length:
        raise DecodeError(what, f"{what} must be {length} bytes")
    return value


@dataclass(frozen=True, slots=True)
class WireMessage:
    """A parsed group message: ``[1, group_id, epoch, sender, index, ciphertext, signature]``."""

    group_id: bytes
    epoch: int
    sender: bytes
    index: int
    ciphertext: bytes
    signature: bytes = b""

    def __repr__(self) -> str:
        return (
            f"WireMessage(group_id={self.group_id.hex()}, epoch={self.epoch}, "
            f"sender={self.sender.hex()[:16]}…, index={self.index}, "
            f"ciphertext=<{len(self.ciphertext)} bytes>)"
        )


def message_header(group_id: bytes, epoch: int, sender: bytes, index: int) -> bytes:
    """The associated data of a message's AEAD and the prefix of its signed bytes.

    ``cbor(["p2pchat/group-message", 1, group_id, epoch, sender, index])``. A CBOR item is
    self-delimiting, so ``header || ciphertext`` (the signed bytes) splits in one way only.
    """
    return cbor.encode([MESSAGE_CONTEXT, VERSION, group_id, epoch, sender, index])


def encode_message(message: WireMessage) -> bytes:
    return cbor.encode(
        [
            VERSION,
            message.group_id,
            message.epoch,
            message.sender,
            message.index,
            message.ciphertext,
            message.signature,
        ]
    )


def decode_message(data: bytes) -> WireMessage:
    """Parse untrusted bytes into a :class:`WireMessage`; every defect raises DecodeError."""
    value: Any = cbor.decode(data, max_size=MAX_MESSAGE_SIZE)
    if not isinstance(value, list) or len(value) != 7:
        raise DecodeError("shape", "a group message is an array of 7 items")
    if value[0] != VERSION or isinstance(value[0], bool):
        raise DecodeError("version", "unknown group message version")
    ciphertext = value[5]
    if not isinstance(ciphertext, bytes):
        raise DecodeError("ciphertext", "ciphertext must be a byte string")
    return WireMessage(
        group_id=check_group_id(value[1]),
        epoch=check_uint(value[2], "epoch"),
        sender=check_sender(value[3]),
        index=check_uint(value[4], "index", maximum=MAX_INDEX),
        ciphertext=ciphertext,
        signature=_check_bytes(value[6], SIGNATURE_LEN, "signature"),
    )


@dataclass(frozen=True, slots=True)
class WireDistribution:
    """A parsed sender-key distribution message (holds a chain key: never shown in repr)."""

    group_id: bytes
    epoch: int
    sender: bytes
    index: int
    chain_key: bytes
    signing_key: bytes
    signature: bytes = b""

    def __repr__(self) -> str:
        return (
            f"WireDistribution(group_id={self.group_id.hex()}, epoch={self.epoch}, "
            f"sender={self.sender.hex()[:16]}…, index={self.index})"
        )


def distribution_signed_bytes(d: WireDistribution) -> bytes:
    """``cbor(["p2pchat/group-sender-key", 1, group_id, epoch, sender, index, chain_key,
    signing_key])``: what the sender key's own signing key signs."""
    return cbor.encode(
        [
            DISTRIBUTION_CONTEXT,
            VERSION,
            d.group_id,
            d.epoch,
            d.sender,
            d.index,
            d.chain_key,
            d.signing_key,
        ]
    )


def encode_distribution(d: WireDistribution) -> bytes:
    return cbor.encode(
        [VERSION, d.group_id, d.epoch, d.sender, d.index, d.chain_key, d.signing_key, d.signature]
    )


def decode_distribution(data: bytes) -> WireDistribution:
    value: Any = cbor.decode(data, max_size=MAX_DISTRIBUTION_SIZE)
    if not isinstance(value, list) or len(value) != 8:
        raise DecodeError("shape", "a sender-key distribution is an array of 8 items")
    if value[0] != VERSION or isinstance(value[0], bool):
        raise DecodeError("version", "unknown sender-key distribution version")
    return WireDistribution(
        group_id=check_group_id(value[1]),
        epoch=check_uint(value[2], "epoch"),
        sender=check_sender(value[3]),
        index=check_uint(value[4], "index", maximum=MAX_INDEX),
        chain_key=_check_bytes(value[5], KEY_LEN, "chain-key"),
        signing_key=_check_bytes(value[6], KEY_LEN, "signing-key"),
        signature=_check_bytes(value[7], SIGNATURE_LEN, "signature"),
    )


def sign(secret_key: bytes, data: bytes) -> bytes:
    """Detached Ed25519 signature (libsodium's combined form, minus the message)."""
    return bytes(bindings.crypto_sign(data, secret_key)[:SIGNATURE_LEN])


def verify(public_key: bytes, data: bytes, signature: bytes) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is valid for ``data``."""
    try:
        bindings.crypto_sign_open(signature + data, public_key)
    except _NaclCryptoError:
        raise SignatureError("group signature does not verify") from None


def seal_body(message_key_seed: bytes, header: bytes, plaintext: bytes) -> bytes:
    key, nonce = message_keys(message_key_seed)
    padded = bindings.sodium_pad(plaintext, PAD_BLOCK)
    return bytes(bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(padded, header, nonce, key))


def open_body(message_key_seed: bytes, header: bytes, ciphertext: bytes) -> bytes:
    """Decrypt and unpad; any failure (tag or padding) is one AuthenticationError."""
    key, nonce = message_keys(message_key_seed)
    try:
        padded = bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, header, nonce, key)
        return bytes(bindings.sodium_unpad(padded, PAD_BLOCK))
    except _NaclCryptoError:
        raise AuthenticationError("group message does not decrypt") from None

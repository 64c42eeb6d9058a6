"""Ed25519 signatures over domain-separated canonical CBOR: the one signing rule of the wire.

Every signed map (envelope, group event, DHT record, mailbox request) carries its
signature under the key ``"sig"``. The signed bytes are::

    b"p2pchat/v1/" + context + b"\\x00" + cbor(map without "sig")

where ``cbor`` is the deterministic profile encoding. Because the decoder accepts only
canonical input, re-encoding the received map minus ``"sig"`` yields exactly the bytes
the signer signed, including fields this version does not understand. ``context`` keeps
a signature made for one purpose from being valid for another.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nacl.exceptions import CryptoError as NaclError
from nacl.signing import SigningKey, VerifyKey

from p2pchat.errors import WireError

from .codec import encode_value

__all__ = [
    "SIG_KEY",
    "CONTEXTS",
    "ExternalSigner",
    "AnySigner",
    "public_key_of",
    "signed_bytes",
    "sign_map",
    "verify_signature",
]

SIG_KEY = "sig"
#: Every signing context in use; a new one must be added to protocol-spec/wire.md.
CONTEXTS = frozenset({"envelope", "event", "record", "mailbox", "revocation"})


def signed_bytes(context: str, value: Mapping[str, Any]) -> bytes:
    """The exact bytes a signature over ``value`` covers (``"sig"`` is left out)."""
    if context not in CONTEXTS:
        raise ValueError(f"unknown signing context {context!r}")
    unsigned = {k: v for k, v in value.items() if k != SIG_KEY}
    return b"p2pchat/v1/" + context.encode() + b"\x00" + encode_value(unsigned)


@dataclass(frozen=True, slots=True)
class ExternalSigner:
    """An Ed25519 key held elsewhere, e.g. the account key inside
    ``p2pchat_crypto.identity.Account``: its public key and a detached-sign function."""

    public_key: bytes
    sign: Callable[[bytes], bytes]


AnySigner = SigningKey | ExternalSigner


def public_key_of(signer: AnySigner) -> bytes:
    return bytes(signer.verify_key) if isinstance(signer, SigningKey) else signer.public_key


def sign_map(context: str, value: Mapping[str, Any], signing_key: AnySigner) -> bytes:
    """The 64-byte Ed25519 signature of ``value`` (without its ``"sig"``) in ``context``."""
    message = signed_bytes(context, value)
    if isinstance(signing_key, SigningKey):
        return bytes(signing_key.sign(message).signature)
    return signing_key.sign(message)


def verify_signature(message: bytes, signature: bytes, public_key: bytes) -> None:
    """Raise ``WireError("bad-signature")`` unless ``signature`` verifies.

    An invalid public key (not a curve point) is reported the same way: to the peer it
    is one failure, and nothing about the key leaks into the message.
    """
    try:
        VerifyKey(public_key).verify(message, signature)
    except (NaclError, ValueError, TypeError) as exc:
        raise WireError("bad-signature", "signature does not verify") from exc

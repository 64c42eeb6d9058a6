"""The exception tree of ``p2pchat_crypto``.

Every error this package raises derives from :class:`CryptoError`::

    CryptoError
    ├── DecodeError            malformed bytes: CBOR profile violation, wrong shape or type
    ├── VerificationError      a well-formed object failed a check
    │   ├── SignatureError     a signature does not verify
    │   ├── ExpiredError       a certificate, bundle or prekey is past its expiry
    │   └── StaleError         an older sequence number than one already accepted
    ├── DecryptionError        a message could not be decrypted (ONE opaque error on the wire)
    │   ├── AuthenticationError    bad MAC / AEAD tag, or no key fits the header
    │   ├── DuplicateMessageError  this message was already decrypted (replay)
    │   ├── GapTooLargeError       too many skipped messages in one chain
    │   ├── UnknownSessionError    no session / sender key matches the message
    │   └── ReplayError            an initial (X3DH) message seen before
    └── PickleError            a pickle has a wrong key, a wrong kind or an unknown version

Decryption never changes state when it fails. The subclasses are precise inside the
process; a node must report any of them to a peer as one opaque failure. Messages
never contain key material.
"""

from __future__ import annotations

__all__ = [
    "CryptoError",
    "DecodeError",
    "VerificationError",
    "SignatureError",
    "ExpiredError",
    "StaleError",
    "DecryptionError",
    "AuthenticationError",
    "DuplicateMessageError",
    "GapTooLargeError",
    "UnknownSessionError",
    "ReplayError",
    "PickleError",
]


class CryptoError(Exception):
    """Root of every error raised by p2pchat_crypto."""


class DecodeError(CryptoError):
    """Bytes that are not a valid encoding of what was expected.

    ``reason`` is a short, stable, machine-readable slug (e.g. ``"trailing-bytes"``);
    the message adds detail for people.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


class VerificationError(CryptoError):
    """A well-formed object failed a cryptographic or policy check."""


class SignatureError(VerificationError):
    """A signature does not verify under the expected key."""


class ExpiredError(VerificationError):
    """A certificate, bundle or prekey is past its expiry (or not yet valid)."""


class StaleError(VerificationError):
    """An object carries an older sequence number than one already accepted."""


class DecryptionError(CryptoError):
    """A message could not be decrypted. Report it to peers as one opaque failure."""


class AuthenticationError(DecryptionError):
    """The AEAD tag or MAC is wrong, or no known header key opens the header."""


class DuplicateMessageError(DecryptionError):
    """The message was already decrypted once (its key is gone)."""


class GapTooLargeError(DecryptionError):
    """Decrypting would skip more message keys than allowed."""


class UnknownSessionError(DecryptionError):
    """No session, sender key or epoch matches the message."""


class ReplayError(DecryptionError):
    """An initial key-agreement message that was already accepted once."""


class PickleError(CryptoError):
    """A pickle could not be loaded: wrong key, wrong kind, corrupt, or unknown version."""

"""The exception tree of p2pchat (the node, its storage, network, CLI and RPC).

::

    P2PChatError
    ├── ConfigError                 bad configuration or command-line input
    ├── KeystoreError               the identity keystore
    │   ├── KeystoreMissingError        no keystore in this home
    │   ├── KeystoreExistsError         refusing to overwrite an existing key
    │   ├── WrongPassphraseError        the passphrase does not open the keystore
    │   ├── KeystoreCorruptError        truncated, tampered or not a keystore
    │   └── UnsupportedVersionError     a keystore format this version cannot read
    ├── ProtocolError               the *peer* broke the protocol (bad frame, bad signature…)
    │   ├── WireError                   a frame or message that fails the codec (has ``reason``)
    │   └── RateLimitedError            the peer exceeded a rate limit
    ├── LocalProtocolError          *we* tried to do something the protocol does not allow
    ├── CryptoFailure               an error from p2pchat_crypto, mapped at the boundary
    ├── StorageError                the local store failed or is corrupt
    │   └── QuotaExceededError          a mailbox put would exceed a quota (nothing stored)
    ├── NetworkError                the network failed (dial, stream, DHT lookup)
    │   └── PeerUnreachableError        no route to the peer right now
    ├── NotFoundError               an unknown contact, conversation, group, message…
    ├── PermissionDeniedError       not allowed (blocked contact, missing role, RPC scope)
    └── ClosedError                 the object (node, store, client) was closed by its owner

Errors from ``p2pchat_crypto`` (its own tree, rooted at ``CryptoError``, since that
package must not import this one) are mapped to :class:`CryptoFailure` at the node's
boundary with :func:`map_crypto_errors`; the original stays in ``__cause__``.
Messages never contain secrets.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from p2pchat_crypto.errors import CryptoError

__all__ = [
    "P2PChatError",
    "ConfigError",
    "KeystoreError",
    "KeystoreMissingError",
    "KeystoreExistsError",
    "WrongPassphraseError",
    "KeystoreCorruptError",
    "UnsupportedVersionError",
    "ProtocolError",
    "WireError",
    "RateLimitedError",
    "LocalProtocolError",
    "CryptoFailure",
    "StorageError",
    "QuotaExceededError",
    "NetworkError",
    "PeerUnreachableError",
    "NotFoundError",
    "PermissionDeniedError",
    "ClosedError",
    "map_crypto_errors",
]


class P2PChatError(Exception):
    """Root of every error p2pchat raises on purpose."""


class ConfigError(P2PChatError):
    """Bad configuration or command-line input."""


class KeystoreError(P2PChatError):
    """The identity keystore could not be used."""


class KeystoreMissingError(KeystoreError):
    """There is no keystore in this home directory."""


class KeystoreExistsError(KeystoreError):
    """A keystore already exists and would be overwritten."""


class WrongPassphraseError(KeystoreError):
    """The passphrase does not open the keystore."""


class KeystoreCorruptError(KeystoreError):
    """The keystore file is truncated, tampered with, or not a keystore."""


class UnsupportedVersionError(KeystoreError):
    """The keystore uses a format version this release cannot read."""


class ProtocolError(P2PChatError):
    """The remote peer violated the protocol."""


class WireError(ProtocolError):
    """A frame or message failed strict decoding or validation.

    ``reason`` is a stable slug (``"trailing-bytes"``, ``"missing-field"``…) that test
    vectors and logs use; the message adds detail.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


class RateLimitedError(ProtocolError):
    """The peer exceeded a rate limit; its input is dropped before expensive work."""


class LocalProtocolError(P2PChatError):
    """We attempted something the protocol does not allow (a bug or a bad API call)."""


class CryptoFailure(P2PChatError):
    """An error from p2pchat_crypto, mapped at the node's boundary (see ``__cause__``)."""


class StorageError(P2PChatError):
    """The local store failed or is corrupt."""


class QuotaExceededError(StorageError):
    """A mailbox item was refused because it would exceed a quota; nothing was stored.

    ``scope`` is ``"sender"`` (this sender tag's share) or ``"total"`` (the whole mailbox).
    """

    def __init__(self, scope: Literal["sender", "total"], detail: str) -> None:
        self.scope = scope
        super().__init__(f"mailbox quota exceeded ({scope}): {detail}")


class NetworkError(P2PChatError):
    """A network operation failed."""


class PeerUnreachableError(NetworkError):
    """The peer cannot be reached right now."""


class NotFoundError(P2PChatError):
    """An unknown contact, conversation, group or message."""


class PermissionDeniedError(P2PChatError):
    """The operation is not allowed."""


class ClosedError(P2PChatError):
    """The object was closed by its owner and cannot be used any more."""


@contextmanager
def map_crypto_errors() -> Iterator[None]:
    """Re-raise any ``p2pchat_crypto`` error as :class:`CryptoFailure`."""
    try:
        yield
    except CryptoError as exc:
        raise CryptoFailure(str(exc)) from exc

"""Outbound and inbound sender-key sessions (see :mod:`p2pchat_crypto.group` for the tour).

An outbound :class:`GroupSession` belongs to one (group, epoch, sender device): it owns a
hash chain and an Ed25519 signing key, encrypts and signs. An :class:`InboundGroupSession`
is the receiving half, built from the sender's distribution message: it can verify every
message of that sender and decrypt those from the distributed chain index onwards.

Decryption computes the next state in local variables and assigns it only after the AEAD
tag verified, so a failed call leaves the session exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from nacl import bindings

from . import group_wire as wire
from .errors import (
    DecodeError,
    DuplicateMessageError,
    GapTooLargeError,
    PickleError,
    UnknownSessionError,
    VerificationError,
)
from .sealed import Rng, pack, seal, unpack, unseal

__all__ = [
    "GroupLimits",
    "DEFAULT_LIMITS",
    "GroupPlaintext",
    "GroupMessageHeader",
    "parse_header",
    "GroupSession",
    "InboundGroupSession",
    "OUTBOUND_PICKLE_KIND",
    "INBOUND_PICKLE_KIND",
]

OUTBOUND_PICKLE_KIND = "p2pchat/group-session"
INBOUND_PICKLE_KIND = "p2pchat/inbound-group-session"
_PICKLE_VERSION = 1


@dataclass(frozen=True, slots=True)
class GroupLimits:
    """Bounds on what one inbound session does for a peer who skips ahead.

    ``max_skip``: the largest jump (messages skipped by one incoming message); each skipped
    index costs two HMACs, so this caps the work a single message can cause.
    ``max_skipped_keys``: how many keys of skipped messages are kept for late arrivals;
    beyond it the oldest (lowest index) is forgotten and that message becomes undecryptable.
    """

    max_skip: int = 2000
    max_skipped_keys: int = 2000

    def __post_init__(self) -> None:
        if self.max_skip < 0 or self.max_skipped_keys < 0:
            raise ValueError("group limits must not be negative")


DEFAULT_LIMITS = GroupLimits()


class GroupPlaintext(NamedTuple):
    """What :meth:`InboundGroupSession.decrypt` returns: ``plaintext, index = ...``.

    (The field is ``message_index``: a tuple already has an ``index`` method.)
    """

    plaintext: bytes
    message_index: int


@dataclass(frozen=True, slots=True)
class GroupMessageHeader:
    """The authenticated clear-text part of a group message, used to route it to a session."""

    group_id: bytes
    epoch: int
    sender: bytes
    index: int

    @property
    def session_id(self) -> tuple[bytes, int, bytes]:
        return (self.group_id, self.epoch, self.sender)


def parse_header(message: bytes) -> GroupMessageHeader:
    """Read the header of a group message without any key (raises DecodeError).

    Nothing here is authenticated yet: use it only to pick a session, never to act.
    """
    parsed = wire.decode_message(message)
    return GroupMessageHeader(parsed.group_id, parsed.epoch, parsed.sender, parsed.index)


def _signing_keypair(seed: bytes) -> tuple[bytes, bytes]:
    public, secret = bindings.crypto_sign_seed_keypair(seed)
    return bytes(public), bytes(secret)


def _check_pickle_key(value: object, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != wire.KEY_LEN:
        raise PickleError(f"malformed {what} in group pickle")
    return value


class GroupSession:
    """The outbound sender key of this device in one (group, epoch).

    Persist the session (``to_bytes``/``to_sealed``) after each :meth:`encrypt` and before
    the message leaves the device: reusing a chain index after a crash would reuse an
    AEAD key and nonce.
    """

    __slots__ = (
        "_chain_key",
        "_epoch",
        "_group_id",
        "_index",
        "_sender",
        "_signing_public",
        "_signing_secret",
        "_signing_seed",
    )

    def __init__(
        self,
        *,
        group_id: bytes,
        epoch: int,
        sender: bytes,
        index: int,
        chain_key: bytes,
        signing_seed: bytes,
    ) -> None:
        """Prefer :meth:`create` or :meth:`from_bytes`; this checks and stores raw state.

        Arguments outside the format (a 65-byte group id, a negative epoch) are the
        caller's mistake, so they raise ValueError rather than a peer-facing error.
        """
        try:
            self._group_id = wire.check_group_id(group_id)
            self._epoch = wire.check_uint(epoch, "epoch")
            self._sender = wire.check_sender(sender)
            self._index = wire.check_uint(index, "index", maximum=wire.MAX_INDEX + 1)
        except DecodeError as exc:
            raise ValueError(str(exc)) from None
        if len(chain_key) != wire.KEY_LEN or len(signing_seed) != wire.KEY_LEN:
            raise ValueError("chain key and signing seed are 32 bytes each")
        self._chain_key = bytes(chain_key)
        self._signing_seed = bytes(signing_seed)
        self._signing_public, self._signing_secret = _signing_keypair(self._signing_seed)

    @classmethod
    def create(
        cls, group_id: bytes, epoch: int, sender_device_key: bytes, rng: Rng
    ) -> GroupSession:
        """A fresh sender key at index 0: 32 random bytes of chain key, then 32 of seed."""
        chain_key = rng(wire.KEY_LEN)
        signing_seed = rng(wire.KEY_LEN)
        return cls(
            group_id=group_id,
            epoch=epoch,
            sender=sender_device_key,
            index=0,
            chain_key=chain_key,
            signing_seed=signing_seed,
        )

    @property
    def group_id(self) -> bytes:
        return self._group_id

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def sender(self) -> bytes:
        return self._sender

    @property
    def session_id(self) -> tuple[bytes, int, bytes]:
        return (self._group_id, self._epoch, self._sender)

    @property
    def message_index(self) -> int:
        """The index the next :meth:`encrypt` will use."""
        return self._index

    @property
    def signing_public_key(self) -> bytes:
        return self._signing_public

    def distribution_message(self) -> bytes:
        """The sender key at the CURRENT index, for members who may read from now on.

        Contains the chain key: send it only inside a pairwise session, only to current
        members of this epoch. A receiver cannot derive earlier message keys from it.
        """
        if self._index > wire.MAX_INDEX:
            raise ValueError("this sender key is exhausted: create a new session")
        unsigned = wire.WireDistribution(
            self._group_id,
            self._epoch,
            self._sender,
            self._index,
            self._chain_key,
            self._signing_public,
        )
        signature = wire.sign(self._signing_secret, wire.distribution_signed_bytes(unsigned))
        return wire.encode_distribution(
            wire.WireDistribution(
                unsigned.group_id,
                unsigned.epoch,
                unsigned.sender,
                unsigned.index,
                unsigned.chain_key,
                unsigned.signing_key,
                signature,
            )
        )

    def encrypt(self, plaintext: bytes) -> bytes:
        """Encrypt and sign one message at the current index, then advance the chain."""
        if len(plaintext) > wire.MAX_PLAINTEXT_SIZE:
            raise ValueError(f"a group message holds at most {wire.MAX_PLAINTEXT_SIZE} bytes")
        if self._index > wire.MAX_INDEX:
            raise ValueError("this sender key is exhausted: create a new session")
        seed, next_chain_key = wire.chain_step(self._chain_key)
        header = wire.message_header(self._group_id, self._epoch, self._sender, self._index)
        ciphertext = wire.seal_body(seed, header, plaintext)
        signature = wire.sign(self._signing_secret, header + ciphertext)
        message = wire.encode_message(
            wire.WireMessage(
                self._group_id, self._epoch, self._sender, self._index, ciphertext, signature
            )
        )
        self._chain_key = next_chain_key
        self._index += 1
        return message

    def to_bytes(self) -> bytes:
        """Versioned pickle: ``["p2pchat/group-session", 1, [group_id, epoch, sender,
        index, chain_key, signing_seed]]`` (plaintext secrets: seal it to store it)."""
        return pack(
            OUTBOUND_PICKLE_KIND,
            _PICKLE_VERSION,
            [
                self._group_id,
                self._epoch,
                self._sender,
                self._index,
                self._chain_key,
                self._signing_seed,
            ],
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> GroupSession:
        version, body = unpack(data, OUTBOUND_PICKLE_KIND)
        if version != _PICKLE_VERSION:
            raise PickleError(f"unknown group-session pickle version {version}")
        if not isinstance(body, list) or len(body) != 6:
            raise PickleError("malformed group-session pickle")
        try:
            return cls(
                group_id=body[0],
                epoch=body[1],
                sender=body[2],
                index=body[3],
                chain_key=_check_pickle_key(body[4], "chain key"),
                signing_seed=_check_pickle_key(body[5], "signing seed"),
            )
        except ValueError as exc:
            raise PickleError(f"malformed group-session pickle ({exc})") from None

    def to_sealed(self, key: bytes, rng: Rng) -> bytes:
        return seal(self.to_bytes(), key, rng)

    @classmethod
    def from_sealed(cls, blob: bytes, key: bytes) -> GroupSession:
        return cls.from_bytes(unseal(blob, key, OUTBOUND_PICKLE_KIND))

    def __repr__(self) -> str:
        return (
            f"GroupSession(group_id={self._group_id.hex()}, epoch={self._epoch}, "
            f"sender={self._sender.hex()[:16]}…, message_index={self._index})"
        )


class InboundGroupSession:
    """One sender's key as received by this device: verifies and decrypts its messages."""

    __slots__ = (
        "_chain_key",
        "_epoch",
        "_first_index",
        "_group_id",
        "_limits",
        "_next_index",
        "_sender",
        "_signing_public",
        "_skipped",
    )

    def __init__(
        self,
        *,
        group_id: bytes,
        epoch: int,
        sender: bytes,
        signing_public_key: bytes,
        first_index: int,
        next_index: int,
        chain_key: bytes,
        skipped: dict[int, bytes],
        limits: GroupLimits = DEFAULT_LIMITS,
    ) -> None:
        """Prefer :meth:`from_distribution` or :meth:`from_bytes`."""
        self._group_id = group_id
        self._epoch = epoch
        self._sender = sender
        self._signing_public = signing_public_key
        self._first_index = first_index
        self._next_index = next_index
        self._chain_key = chain_key
        self._limits = limits
        # Insertion order is index order (skipped keys are only ever appended in ascending
        # order), so the first entry is always the oldest one to evict.
        self._skipped = dict(sorted(skipped.items()))
        self._evict()

    @classmethod
    def from_distribution(
        cls,
        data: bytes,
        *,
        expected_sender: bytes | None = None,
        limits: GroupLimits = DEFAULT_LIMITS,
    ) -> InboundGroupSession:
        """Build the session from a distribution message (DecodeError, SignatureError).

        The message proves possession of the sender key's signing key, not who sent it:
        the node must pass the device key of the pairwise session it came through as
        ``expected_sender`` (mismatch: VerificationError) or compare ``sender`` itself.
        """
        dist = wire.decode_distribution(data)
        wire.verify(dist.signing_key, wire.distribution_signed_bytes(dist), dist.signature)
        if expected_sender is not None and dist.sender != expected_sender:
            raise VerificationError("sender key distributed for another device")
        return cls(
            group_id=dist.group_id,
            epoch=dist.epoch,
            sender=dist.sender,
            signing_public_key=dist.signing_key,
            first_index=dist.index,
            next_index=dist.index,
            chain_key=dist.chain_key,
            skipped={},
            limits=limits,
        )

    @property
    def group_id(self) -> bytes:
        return self._group_id

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def sender(self) -> bytes:
        return self._sender

    @property
    def session_id(self) -> tuple[bytes, int, bytes]:
        return (self._group_id, self._epoch, self._sender)

    @property
    def signing_public_key(self) -> bytes:
        return self._signing_public

    @property
    def first_index(self) -> int:
        """The lowest index this session could ever decrypt (from the distribution)."""
        return self._first_index

    @property
    def next_index(self) -> int:
        """One past the highest index decrypted so far (or ``first_index``)."""
        return self._next_index

    @property
    def skipped_count(self) -> int:
        return len(self._skipped)

    def decrypt(self, message: bytes) -> GroupPlaintext:
        """Verify, then decrypt. Check order: shape, session, signature, index, AEAD.

        Raises DecodeError, UnknownSessionError (other group/epoch/sender, or an index
        before ``first_index``), SignatureError, DuplicateMessageError (an index already
        decrypted or whose skipped key was evicted), GapTooLargeError, AuthenticationError.
        """
        return self._decrypt_parsed(wire.decode_message(message))

    def _decrypt_parsed(self, msg: wire.WireMessage) -> GroupPlaintext:
        """:meth:`decrypt` of a parsed message (the keyring parses once to route it)."""
        if (msg.group_id, msg.epoch, msg.sender) != self.session_id:
            raise UnknownSessionError("message belongs to another group, epoch or sender")
        header = wire.message_header(msg.group_id, msg.epoch, msg.sender, msg.index)
        wire.verify(self._signing_public, header + msg.ciphertext, msg.signature)
        index = msg.index
        if index < self._first_index:
            raise UnknownSessionError("message predates the sender key this device received")
        if index < self._next_index:
            seed = self._skipped.get(index)
            if seed is None:
                raise DuplicateMessageError("message index already decrypted or forgotten")
            plaintext = wire.open_body(seed, header, msg.ciphertext)
            del self._skipped[index]
            return GroupPlaintext(plaintext, index)
        if index - self._next_index > self._limits.max_skip:
            raise GapTooLargeError("message skips too far ahead in the sender's chain")
        chain_key = self._chain_key
        new_skipped: list[tuple[int, bytes]] = []
        keep_from = index - self._limits.max_skipped_keys
        for skipped_index in range(self._next_index, index):
            seed, chain_key = wire.chain_step(chain_key)
            if skipped_index >= keep_from:
                new_skipped.append((skipped_index, seed))
        seed, chain_key = wire.chain_step(chain_key)
        plaintext = wire.open_body(seed, header, msg.ciphertext)
        # Commit: everything below succeeded, nothing above changed the session.
        self._skipped.update(new_skipped)
        self._evict()
        self._chain_key = chain_key
        self._next_index = index + 1
        return GroupPlaintext(plaintext, index)

    def _evict(self) -> None:
        while len(self._skipped) > self._limits.max_skipped_keys:
            del self._skipped[next(iter(self._skipped))]

    def to_bytes(self) -> bytes:
        """Versioned pickle: ``["p2pchat/inbound-group-session", 1, [group_id, epoch,
        sender, signing_key, first_index, next_index, chain_key, [[index, seed]...]]]``."""
        return pack(
            INBOUND_PICKLE_KIND,
            _PICKLE_VERSION,
            [
                self._group_id,
                self._epoch,
                self._sender,
                self._signing_public,
                self._first_index,
                self._next_index,
                self._chain_key,
                [[index, seed] for index, seed in self._skipped.items()],
            ],
        )

    @classmethod
    def from_bytes(
        cls, data: bytes, *, limits: GroupLimits = DEFAULT_LIMITS
    ) -> InboundGroupSession:
        version, body = unpack(data, INBOUND_PICKLE_KIND)
        if version != _PICKLE_VERSION:
            raise PickleError(f"unknown inbound-group-session pickle version {version}")
        try:
            return cls._from_body(body, limits)
        except DecodeError as exc:
            raise PickleError(f"malformed inbound-group-session pickle ({exc.reason})") from None

    @classmethod
    def _from_body(cls, body: Any, limits: GroupLimits) -> InboundGroupSession:
        if not isinstance(body, list) or len(body) != 8 or not isinstance(body[7], list):
            raise PickleError("malformed inbound-group-session pickle")
        first = wire.check_uint(body[4], "first-index", maximum=wire.MAX_INDEX)
        nxt = wire.check_uint(body[5], "next-index", maximum=wire.MAX_INDEX + 1)
        skipped: dict[int, bytes] = {}
        previous = -1
        for entry in body[7]:
            if not isinstance(entry, list) or len(entry) != 2:
                raise PickleError("malformed skipped key in inbound-group-session pickle")
            index = wire.check_uint(entry[0], "skipped-index")
            if not previous < index < nxt or index < first:
                raise PickleError("skipped keys out of order or out of range")
            skipped[index] = _check_pickle_key(entry[1], "skipped key")
            previous = index
        if first > nxt:
            raise PickleError("first index after next index")
        return cls(
            group_id=wire.check_group_id(body[0]),
            epoch=wire.check_uint(body[1], "epoch"),
            sender=wire.check_sender(body[2]),
            signing_public_key=_check_pickle_key(body[3], "signing key"),
            first_index=first,
            next_index=nxt,
            chain_key=_check_pickle_key(body[6], "chain key"),
            skipped=skipped,
            limits=limits,
        )

    def to_sealed(self, key: bytes, rng: Rng) -> bytes:
        return seal(self.to_bytes(), key, rng)

    @classmethod
    def from_sealed(
        cls, blob: bytes, key: bytes, *, limits: GroupLimits = DEFAULT_LIMITS
    ) -> InboundGroupSession:
        return cls.from_bytes(unseal(blob, key, INBOUND_PICKLE_KIND), limits=limits)

    def __repr__(self) -> str:
        return (
            f"InboundGroupSession(group_id={self._group_id.hex()}, epoch={self._epoch}, "
            f"sender={self._sender.hex()[:16]}…, first_index={self._first_index}, "
            f"next_index={self._next_index}, skipped={len(self._skipped)})"
        )

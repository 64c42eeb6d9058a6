"""Pairwise sessions: X3DH to start, then the Double Ratchet with header encryption.

Modelled on vodozemac's Olm session::

    alice_session, initial = Session.initiate(alice, bob_bundle, rng, now=now, plaintext=b"hi")
    bob_session, plaintext = Session.respond(bob, bob_prekey, initial.encode(), cache, now=now)
    wire = bob_session.encrypt(b"hello", rng)        # Bob's first reply: a DH ratchet step
    alice_session.decrypt(wire)

Until the initiator has decrypted something from the responder, everything it encrypts
is an :class:`~p2pchat_crypto.x3dh.InitialMessage` (so whichever of its first messages
arrives first can start the session). A responder that already has a session with an
initial message's :attr:`~p2pchat_crypto.x3dh.InitialMessage.session_id` passes the
message to :meth:`Session.decrypt`; only otherwise does it call :meth:`Session.respond`.

Decryption runs on a copy of the state (cheap: the skipped-key map is shared until
written) and commits it only on success; encryption writes the state only once nothing
can fail. Either way an operation that fails (bad tag, duplicate, gap too large, wrong
session, failing randomness) leaves the session exactly as it was. Errors are precise
here; a node reports any of them to a peer as one opaque failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from . import cbor, sealed
from ._double_ratchet import (
    MAX_SKIP,
    MAX_SKIPPED_KEYS,
    PAD_BLOCK,
    RatchetState,
    decode_ratchet_message,
    decrypt,
    encode_ratchet_message,
    encrypt,
    split_ratchet_message,
)
from ._fields import expect_int
from ._keys import KEY_LEN, x25519_public
from .errors import (
    AuthenticationError,
    DecodeError,
    ExpiredError,
    PickleError,
    SignatureError,
    UnknownSessionError,
)
from .identity import Account, Device, DeviceCertificate, PublicIdentity
from .prekeys import PrekeyBundle, SignedPrekey, find_prekey
from .replay import ReplayCache
from .sealed import Rng
from .x3dh import (
    INITIAL_MESSAGE_TYPE,
    MAX_MESSAGE_SIZE,
    InitialMessage,
    initiator_agree,
    responder_agree,
)

__all__ = [
    "Session",
    "is_initial_message",
    "SESSION_PICKLE_KIND",
    "MAX_SKIP",
    "MAX_SKIPPED_KEYS",
    "PAD_BLOCK",
]

SESSION_PICKLE_KIND = "p2pchat/session"
_PICKLE_FIELDS = frozenset(["sid", "ad", "them", "them_dev", "x3dh", "role", "acked", "ratchet"])


def is_initial_message(message: bytes) -> bool:
    """True if ``message`` is shaped like an initial message (cheap routing check)."""
    try:
        value = cbor.decode(message, max_size=MAX_MESSAGE_SIZE)
    except DecodeError:
        return False
    return isinstance(value, list) and bool(value) and value[0] == INITIAL_MESSAGE_TYPE


@dataclass(frozen=True)
class _X3dhPart:
    """The X3DH part of the initial messages of this session.

    The initiator repeats it in every message until the responder answers; the responder
    keeps it to check that a later initial message of this session is not altered.
    """

    identity: PublicIdentity
    device: DeviceCertificate | None
    responder_account_key: bytes
    prekey_id: int
    ephemeral_key: bytes

    @classmethod
    def of(cls, initial: InitialMessage) -> _X3dhPart:
        return cls(
            identity=initial.initiator,
            device=initial.initiator_device,
            responder_account_key=initial.responder_account_key,
            prekey_id=initial.prekey_id,
            ephemeral_key=initial.ephemeral_key,
        )

    def wrap(self, header: bytes, body: bytes) -> InitialMessage:
        return InitialMessage(
            initiator=self.identity,
            initiator_device=self.device,
            responder_account_key=self.responder_account_key,
            prekey_id=self.prekey_id,
            ephemeral_key=self.ephemeral_key,
            header=header,
            body=body,
        )


class Session:
    """One end of a pairwise encrypted session. ``repr`` shows no key material."""

    __slots__ = (
        "_acknowledged",
        "_ad",
        "_initiator",
        "_session_id",
        "_state",
        "_their_device",
        "_their_identity",
        "_x3dh",
    )

    def __init__(
        self,
        *,
        session_id: bytes,
        associated_data: bytes,
        their_identity: PublicIdentity,
        their_device: DeviceCertificate | None,
        x3dh: _X3dhPart,
        initiator: bool,
        acknowledged: bool,
        state: RatchetState,
    ) -> None:
        self._session_id = session_id
        self._ad = associated_data
        self._their_identity = their_identity
        self._their_device = their_device
        self._x3dh = x3dh
        self._initiator = initiator
        self._acknowledged = acknowledged
        self._state = state

    # -- creation -------------------------------------------------------------------

    @classmethod
    def initiate(
        cls,
        account: Account,
        their_bundle: PrekeyBundle,
        rng: Rng,
        *,
        now: int,
        device: Device | None = None,
        plaintext: bytes = b"",
        their_account_key: bytes | None = None,
    ) -> tuple[Session, InitialMessage]:
        """Verify ``their_bundle`` at ``now``, run X3DH, and encrypt ``plaintext``.

        ``their_account_key``, if given, must own the bundle (else VerificationError).
        ``device`` adds our device certificate to the initial messages.
        """
        their_bundle.verify(now=now, account_key=their_account_key)
        certificate = None if device is None else device.certificate
        if certificate is not None and certificate.account_key != account.account_key:
            raise ValueError("the device belongs to another account")
        ephemeral_secret = rng(KEY_LEN)
        ephemeral_key = x25519_public(ephemeral_secret)
        secrets = initiator_agree(
            account,
            responder=their_bundle.identity,
            prekey=their_bundle.prekey,
            prekey_id=their_bundle.prekey_id,
            ephemeral_secret=ephemeral_secret,
            ephemeral_key=ephemeral_key,
            initiator_device_key=None if certificate is None else certificate.device_key,
        )
        state = RatchetState.for_initiator(
            rng,
            root_key=secrets.root_key,
            their_ratchet_key=their_bundle.prekey,
            hka=secrets.initiator_header_key,
            nhkb=secrets.responder_next_header_key,
        )
        x3dh = _X3dhPart(
            identity=account.public(),
            device=certificate,
            responder_account_key=their_bundle.identity.account_key,
            prekey_id=their_bundle.prekey_id,
            ephemeral_key=ephemeral_key,
        )
        session = cls(
            session_id=secrets.session_id,
            associated_data=secrets.associated_data,
            their_identity=their_bundle.identity,
            their_device=their_bundle.device_certificate,
            x3dh=x3dh,
            initiator=True,
            acknowledged=False,
            state=state,
        )
        header, body = session._encrypt_parts(plaintext, rng)
        return session, x3dh.wrap(header, body)

    @classmethod
    def respond(
        cls,
        account: Account,
        prekeys: SignedPrekey | Mapping[int, SignedPrekey],
        initial_message: InitialMessage | bytes,
        replay_cache: ReplayCache,
        *,
        now: int,
    ) -> tuple[Session, bytes]:
        """Accept an initial message: checks, X3DH, first decryption; then remember it.

        Raises :class:`DecodeError`, :class:`UnknownSessionError` (not for this account,
        or unknown prekey id), :class:`ExpiredError` (the prekey expired),
        :class:`ReplayError` (seen before), :class:`SignatureError` /
        :class:`ExpiredError` (initiator identity or device), or the decryption errors.
        ``replay_cache`` is changed only when everything succeeded.
        """
        initial = (
            InitialMessage.decode(initial_message)
            if isinstance(initial_message, bytes)
            else initial_message
        )
        if initial.responder_account_key != account.account_key:
            raise UnknownSessionError("initial message is for another account")
        prekey = find_prekey(prekeys, initial.prekey_id)
        if prekey.is_expired(now=now):
            raise ExpiredError("signed prekey has expired")
        replay_cache.check(initial.ephemeral_key, initial.prekey_id)
        initial.initiator.verify()
        device = initial.initiator_device
        if device is not None:
            if device.account_key != initial.initiator.account_key:
                raise SignatureError("device certificate is signed by another account")
            device.verify(now=now)
        secrets = responder_agree(
            account,
            prekey_secret=prekey.secret_key(),
            prekey_id=initial.prekey_id,
            initiator=initial.initiator,
            ephemeral_key=initial.ephemeral_key,
            initiator_device_key=None if device is None else device.device_key,
        )
        state = RatchetState.for_responder(
            root_key=secrets.root_key,
            prekey_secret=prekey.secret_key(),
            hka=secrets.initiator_header_key,
            nhkb=secrets.responder_next_header_key,
        )
        plaintext = decrypt(state, initial.header, initial.body, secrets.associated_data)
        replay_cache.add(initial.ephemeral_key, initial.prekey_id, expires=prekey.expires)
        session = cls(
            session_id=secrets.session_id,
            associated_data=secrets.associated_data,
            their_identity=initial.initiator,
            their_device=device,
            x3dh=_X3dhPart.of(initial),
            initiator=False,
            acknowledged=True,
            state=state,
        )
        return session, plaintext

    # -- use ------------------------------------------------------------------------

    @property
    def session_id(self) -> bytes:
        """32 bytes naming the session on both sides (see ``x3dh.session_id_of``)."""
        return self._session_id

    @property
    def their_identity(self) -> PublicIdentity:
        return self._their_identity

    @property
    def their_device(self) -> DeviceCertificate | None:
        return self._their_device

    @property
    def is_acknowledged(self) -> bool:
        """False while we are the initiator and have not decrypted anything yet."""
        return self._acknowledged

    @property
    def skipped_keys(self) -> int:
        """How many skipped message keys are stored (bounded by ``MAX_SKIPPED_KEYS``)."""
        return len(self._state.skipped)

    def _encrypt_parts(self, plaintext: bytes, rng: Rng) -> tuple[bytes, bytes]:
        # No copy needed: ``encrypt`` writes the state only after everything succeeded.
        return encrypt(self._state, plaintext, self._ad, rng)

    def encrypt(self, plaintext: bytes, rng: Rng) -> bytes:
        """Encrypt to wire bytes: an initial message until acknowledged, then ratchet."""
        header, body = self._encrypt_parts(plaintext, rng)
        if not self._acknowledged:
            return self._x3dh.wrap(header, body).encode()
        return encode_ratchet_message(header, body)

    def decrypt(self, message: bytes) -> bytes:
        """Decrypt wire bytes from the peer; the state changes only on success.

        Raises :class:`DecodeError` (malformed), :class:`UnknownSessionError` (an initial
        message of another session), :class:`AuthenticationError`,
        :class:`DuplicateMessageError` or :class:`GapTooLargeError`.
        """
        parts = split_ratchet_message(message, max_size=MAX_MESSAGE_SIZE)
        if parts is not None:  # the common case, framed exactly as we frame it
            header, body = parts
        elif is_initial_message(message):
            initial = InitialMessage.decode(message)
            if initial.session_id != self._session_id or self._initiator:
                raise UnknownSessionError("initial message of another session")
            if _X3dhPart.of(initial) != self._x3dh:
                raise AuthenticationError("altered initial message")
            header, body = initial.header, initial.body
        else:
            header, body = decode_ratchet_message(message, max_size=MAX_MESSAGE_SIZE)
        state = self._state.copy()
        plaintext = decrypt(state, header, body, self._ad)
        self._state = state
        self._acknowledged = True
        return plaintext

    # -- pickling -------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Versioned pickle (unencrypted): seal it with :func:`sealed.seal` to store it."""
        x3dh = self._x3dh
        body = {
            "sid": self._session_id,
            "ad": self._ad,
            "them": self._their_identity.encode(),
            "them_dev": None if self._their_device is None else self._their_device.encode(),
            "x3dh": [
                x3dh.identity.encode(),
                None if x3dh.device is None else x3dh.device.encode(),
                x3dh.responder_account_key,
                x3dh.prekey_id,
                x3dh.ephemeral_key,
            ],
            "role": "initiator" if self._initiator else "responder",
            "acked": self._acknowledged,
            "ratchet": self._state.to_value(),
        }
        return sealed.pack(SESSION_PICKLE_KIND, 1, body)

    @classmethod
    def from_bytes(cls, data: bytes) -> Session:
        version, body = sealed.unpack(data, SESSION_PICKLE_KIND)
        if version != 1:
            raise PickleError(f"unknown session pickle version {version}")
        try:
            return cls._from_body(body)
        except (DecodeError, ValueError, KeyError, TypeError):
            raise PickleError("malformed session pickle") from None

    @classmethod
    def _from_body(cls, body: object) -> Session:
        if not isinstance(body, dict) or set(body) != _PICKLE_FIELDS:
            raise DecodeError("shape", "session pickle has the wrong fields")
        identity, device, responder, prekey_id, ephemeral = body["x3dh"]
        x3dh = _X3dhPart(
            identity=PublicIdentity.decode(identity),
            device=None if device is None else DeviceCertificate.decode(device),
            responder_account_key=_key(responder),
            prekey_id=expect_int(prekey_id, what="prekey id"),
            ephemeral_key=_key(ephemeral),
        )
        if (
            not isinstance(body["ad"], bytes)
            or body["role"] not in ("initiator", "responder")
            or not isinstance(body["acked"], bool)
        ):
            raise DecodeError("type", "malformed session fields")
        return cls(
            session_id=_key(body["sid"]),
            associated_data=body["ad"],
            their_identity=PublicIdentity.decode(body["them"]),
            their_device=None
            if body["them_dev"] is None
            else DeviceCertificate.decode(body["them_dev"]),
            x3dh=x3dh,
            initiator=body["role"] == "initiator",
            acknowledged=body["acked"],
            state=RatchetState.from_value(body["ratchet"]),
        )

    def __repr__(self) -> str:
        return (
            f"Session(session_id={self._session_id.hex()!r}, "
            f"their_fingerprint={self._their_identity.fingerprint!r})"
        )


def _key(value: object) -> bytes:
    if not isinstance(value, bytes) or len(value) != KEY_LEN:
        raise DecodeError("length", "expected a 32-byte key")
    return value

"""X3DH key agreement (Signal specification) without one-time prekeys.

The initiator A holds its identity-DH key ``IK_A`` and a fresh ephemeral key ``EK_A``;
the responder B publishes ``IK_B`` and a signed prekey ``SPK_B`` in its bundle::

    DH1 = X25519(IK_A, SPK_B)   DH2 = X25519(EK_A, IK_B)   DH3 = X25519(EK_A, SPK_B)
    okm = HKDF-SHA256(ikm = 0xFF * 32 || DH1 || DH2 || DH3, salt = 0 * 32,
                      info = "p2pchat/x3dh/v1", length = 96)
    root key = okm[0:32]   initiator header key = okm[32:64]
    responder next header key = okm[64:96]

The two header keys seed the header-encrypted Double Ratchet (its section 4). The
*session id* hashes the public transcript (both account keys, ``EK_A``, the prekey id),
so both sides and the node can name the session without secrets. The *associated data*
binds both identities, the initiator's device key and the session id into every AEAD
call of the session, so a message cannot be moved to another session.

An :class:`InitialMessage` carries the X3DH public values plus the first ratchet
message; the initiator keeps sending initial messages until it hears back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import cbor
from ._double_ratchet import ENCRYPTED_HEADER_LEN
from ._fields import decode_array, expect_array, expect_bytes, expect_int
from ._keys import KEY_LEN, x25519_dh
from .errors import DecodeError
from .identity import Account, DeviceCertificate, PublicIdentity
from .kdf import blake2b, hkdf_sha256

__all__ = [
    "SharedSecrets",
    "InitialMessage",
    "initiator_agree",
    "responder_agree",
    "session_id_of",
    "associated_data",
    "X3DH_INFO",
    "ASSOCIATED_DATA_LABEL",
    "SESSION_ID_LABEL",
    "INITIAL_MESSAGE_TYPE",
    "RATCHET_MESSAGE_TYPE",
    "MAX_MESSAGE_SIZE",
]

X3DH_INFO = b"p2pchat/x3dh/v1"
ASSOCIATED_DATA_LABEL = "p2pchat/x3dh-ad/v1"
SESSION_ID_LABEL = "p2pchat/session-id/v1"
_SESSION_ID_PERSON = b"p2pchat-sid-v1"

#: The first element of every pairwise message says which kind it is.
RATCHET_MESSAGE_TYPE = 1
INITIAL_MESSAGE_TYPE = 2
MAX_MESSAGE_SIZE = 256 * 1024

_F = b"\xff" * KEY_LEN


@dataclass(frozen=True)
class SharedSecrets:
    """The output of X3DH: secrets for the ratchet plus the public session binding."""

    root_key: bytes = field(repr=False)
    initiator_header_key: bytes = field(repr=False)
    responder_next_header_key: bytes = field(repr=False)
    associated_data: bytes
    session_id: bytes


def session_id_of(
    initiator_account_key: bytes, responder_account_key: bytes, ephemeral_key: bytes, prekey_id: int
) -> bytes:
    """32-byte BLAKE2b of the public X3DH transcript; unique per initial message."""
    transcript = cbor.encode(
        [SESSION_ID_LABEL, initiator_account_key, responder_account_key, ephemeral_key, prekey_id]
    )
    return blake2b(transcript, size=32, person=_SESSION_ID_PERSON)


def associated_data(
    initiator: PublicIdentity,
    responder: PublicIdentity,
    *,
    initiator_device_key: bytes | None,
    session_id: bytes,
) -> bytes:
    """``AD`` of the X3DH spec, extended: both identities, the initiator device, the id."""
    return cbor.encode(
        [
            ASSOCIATED_DATA_LABEL,
            initiator.account_key,
            initiator.identity_dh_key,
            responder.account_key,
            responder.identity_dh_key,
            initiator_device_key,
            session_id,
        ]
    )


def _derive(
    dh1: bytes,
    dh2: bytes,
    dh3: bytes,
    *,
    initiator: PublicIdentity,
    responder: PublicIdentity,
    initiator_device_key: bytes | None,
    ephemeral_key: bytes,
    prekey_id: int,
) -> SharedSecrets:
    okm = hkdf_sha256(_F + dh1 + dh2 + dh3, salt=b"", info=X3DH_INFO, length=3 * KEY_LEN)
    sid = session_id_of(initiator.account_key, responder.account_key, ephemeral_key, prekey_id)
    return SharedSecrets(
        root_key=okm[:KEY_LEN],
        initiator_header_key=okm[KEY_LEN : 2 * KEY_LEN],
        responder_next_header_key=okm[2 * KEY_LEN :],
        associated_data=associated_data(
            initiator, responder, initiator_device_key=initiator_device_key, session_id=sid
        ),
        session_id=sid,
    )


def initiator_agree(
    account: Account,
    *,
    responder: PublicIdentity,
    prekey: bytes,
    prekey_id: int,
    ephemeral_secret: bytes,
    ephemeral_key: bytes,
    initiator_device_key: bytes | None,
) -> SharedSecrets:
    """A's side. The caller has verified the bundle that ``responder``/``prekey`` come from."""
    identity_secret = account.identity_dh_secret()
    return _derive(
        x25519_dh(identity_secret, prekey),
        x25519_dh(ephemeral_secret, responder.identity_dh_key),
        x25519_dh(ephemeral_secret, prekey),
        initiator=account.public(),
        responder=responder,
        initiator_device_key=initiator_device_key,
        ephemeral_key=ephemeral_key,
        prekey_id=prekey_id,
    )


def responder_agree(
    account: Account,
    *,
    prekey_secret: bytes,
    prekey_id: int,
    initiator: PublicIdentity,
    ephemeral_key: bytes,
    initiator_device_key: bytes | None,
) -> SharedSecrets:
    """B's side. Raises :class:`VerificationError` for a low-order peer key."""
    return _derive(
        x25519_dh(prekey_secret, initiator.identity_dh_key),
        x25519_dh(account.identity_dh_secret(), ephemeral_key),
        x25519_dh(prekey_secret, ephemeral_key),
        initiator=initiator,
        responder=account.public(),
        initiator_device_key=initiator_device_key,
        ephemeral_key=ephemeral_key,
        prekey_id=prekey_id,
    )


@dataclass(frozen=True)
class InitialMessage:
    """X3DH public values and the first ratchet message (encrypted header and body)."""

    initiator: PublicIdentity
    initiator_device: DeviceCertificate | None
    responder_account_key: bytes
    prekey_id: int
    ephemeral_key: bytes
    header: bytes
    body: bytes

    @property
    def session_id(self) -> bytes:
        return session_id_of(
            self.initiator.account_key,
            self.responder_account_key,
            self.ephemeral_key,
            self.prekey_id,
        )

    def encode(self) -> bytes:
        """``[2, identity, device_cert|null, responder_key, prekey_id, EK, header, body]``."""
        identity = self.initiator
        cert = self.initiator_device
        return cbor.encode(
            [
                INITIAL_MESSAGE_TYPE,
                [identity.account_key, identity.identity_dh_key, identity.identity_dh_signature],
                None
                if cert is None
                else [
                    cert.account_key,
                    cert.device_key,
                    cert.created,
                    cert.expires,
                    cert.signature,
                ],
                self.responder_account_key,
                self.prekey_id,
                self.ephemeral_key,
                self.header,
                self.body,
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> InitialMessage:
        """Parse strictly; raises :class:`DecodeError` (also for a non-initial message)."""
        items = decode_array(data, length=8, max_size=MAX_MESSAGE_SIZE, what="initial message")
        if items[0] != INITIAL_MESSAGE_TYPE or isinstance(items[0], bool):
            raise DecodeError("message-type", "not an initial message")
        identity = expect_array(items[1], length=3, what="initiator identity")
        device = None if items[2] is None else DeviceCertificate.decode(cbor.encode(items[2]))
        return cls(
            initiator=PublicIdentity.decode(cbor.encode(identity)),
            initiator_device=device,
            responder_account_key=expect_bytes(items[3], length=KEY_LEN, what="responder key"),
            prekey_id=expect_int(items[4], what="prekey id"),
            ephemeral_key=expect_bytes(items[5], length=KEY_LEN, what="ephemeral key"),
            header=expect_bytes(items[6], length=ENCRYPTED_HEADER_LEN, what="header"),
            body=expect_bytes(items[7], what="body"),
        )

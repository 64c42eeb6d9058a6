"""The link protocol (devices.md section 4): an existing device adds a new one to its account.

Sans-IO, after h11: :class:`LinkOffer` is the existing device's side, :class:`LinkJoiner`
the new device's; bytes in, bytes and typed results out; ``now`` and ``rng`` passed in.
The trio loop that moves these frames over ``/p2pchat/link/1.0.0`` lives in
``p2pchat.devices``.

States of an offer: ``waiting`` (code shown) -> ``joined`` (a valid join: the user compares
the confirmation code) -> ``granted`` or ``denied``; or ``burnt`` (3 bad proofs) /
expired. An offer accepts one join only.
"""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass

from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)
from nacl.exceptions import CryptoError as NaclError

from p2pchat.errors import LocalProtocolError, PermissionDeniedError, WireError
from p2pchat_crypto import cbor
from p2pchat_crypto.errors import CryptoError
from p2pchat_crypto.identity import Account, DeviceCertificate
from p2pchat_crypto.kdf import blake2b, constant_time_equal
from p2pchat_crypto.sealed import Rng

from .codec import Bytes, Choice, Struct, Text, UInt, decode_map, wire
from .records import DeviceListRecord, dht_key, validate_record

__all__ = [
    "LINK_PROTOCOL",
    "LINK_TTL_MS",
    "MAX_LINK_FRAME",
    "LINK_MESSAGES",
    "LinkCode",
    "LinkJoin",
    "LinkGrant",
    "LinkDeny",
    "LinkDone",
    "GrantContent",
    "JoinRequest",
    "LinkResult",
    "LinkOffer",
    "LinkJoiner",
    "decode_link_message",
]

LINK_PROTOCOL = "/p2pchat/link/1.0.0"
#: A link code is valid this long on the existing device's clock.
LINK_TTL_MS = 5 * 60 * 1000
MAX_LINK_FRAME = 8 * 1024
CODE_PREFIX = "p2pchat-link:"
_SECRET_LEN = 16
_NONCE_LEN = 16
_MAX_BAD_PROOFS = 3
_LABEL = "p2pchat/link/v1"
_KEY = Bytes(32)
_DENY_REASONS = ("refused", "expired", "bad-proof", "busy", "revoked", "full")


# -- the code ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkCode:
    """What the new device needs: the existing device's key, the secret, where to dial.

    ``repr`` hides the secret."""

    device_key: bytes
    secret: bytes = dataclasses.field(repr=False)
    addrs: tuple[str, ...] = ()

    def encode(self) -> str:
        data = cbor.encode([1, self.device_key, self.secret, list(self.addrs[:4])])
        return CODE_PREFIX + base64.b32encode(data).decode().rstrip("=").lower()

    @classmethod
    def parse(cls, text: str) -> LinkCode:
        """Parse a code as typed or pasted (``WireError("bad-code")`` if it is not one)."""
        text = "".join(text.split())
        if not text.lower().startswith(CODE_PREFIX) or len(text) > 2048:
            raise WireError("bad-code", f"a link code starts with {CODE_PREFIX!r}")
        body = text[len(CODE_PREFIX) :].upper()
        try:
            data = base64.b32decode(body + "=" * (-len(body) % 8))
            value = cbor.decode(data, max_size=1536)
        except (ValueError, CryptoError):
            raise WireError("bad-code", "the link code is damaged (mistyped?)") from None
        if (
            not isinstance(value, list)
            or len(value) != 4
            or value[0] != 1
            or not isinstance(value[1], bytes)
            or len(value[1]) != 32
            or not isinstance(value[2], bytes)
            or len(value[2]) != _SECRET_LEN
            or not isinstance(value[3], list)
            or len(value[3]) > 4
            or not all(isinstance(a, str) and 0 < len(a) <= 256 for a in value[3])
        ):
            raise WireError("bad-code", "the link code is damaged (mistyped?)")
        return cls(device_key=value[1], secret=value[2], addrs=tuple(value[3]))


# -- messages ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class LinkJoin(Struct):
    KIND = "join"
    t: str = wire("t", Choice(("join",)), "message kind")
    v: int = wire("v", UInt(1, 1), "version, 1")
    device: bytes = wire("dev", _KEY, "the new device's key (its libp2p host key)")
    nonce: bytes = wire("nonce", Bytes(_NONCE_LEN), "fresh random bytes")
    name: str = wire("name", Text(1, 64), "the name the new device proposes")
    proof: bytes = wire("proof", Bytes(32), "keyed BLAKE2b of the transcript under the secret")


@dataclass(frozen=True, kw_only=True)
class LinkGrant(Struct):
    KIND = "grant"
    t: str = wire("t", Choice(("grant",)), "message kind")
    v: int = wire("v", UInt(1, 1), "version, 1")
    box: bytes = wire("box", Bytes(low=40, high=6144), "nonce, then the sealed grant-content")


@dataclass(frozen=True, kw_only=True)
class LinkDeny(Struct):
    KIND = "deny"
    t: str = wire("t", Choice(("deny",)), "message kind")
    v: int = wire("v", UInt(1, 1), "version, 1")
    why: str = wire("why", Choice(_DENY_REASONS), "why the link was refused")


@dataclass(frozen=True, kw_only=True)
class LinkDone(Struct):
    KIND = "done"
    t: str = wire("t", Choice(("done",)), "message kind")
    v: int = wire("v", UInt(1, 1), "version, 1")


@dataclass(frozen=True, kw_only=True)
class GrantContent(Struct):
    """Inside a grant's box: what makes the new device part of the account."""

    account: bytes = wire("acct", Bytes(low=1, high=512), "the account pickle (crypto.md)")
    cert: bytes = wire("cert", Bytes(low=1, high=256), "the new device's certificate")
    devices: bytes = wire("list", Bytes(low=1, high=4096), "the new device-list record")


LINK_MESSAGES: dict[str, type[Struct]] = {
    "join": LinkJoin,
    "grant": LinkGrant,
    "deny": LinkDeny,
    "done": LinkDone,
}


def decode_link_message(data: bytes) -> Struct:
    """Strictly decode one link frame (``WireError``)."""
    raw = decode_map(data, max_size=MAX_LINK_FRAME)
    kind = raw.get("t")
    if not isinstance(kind, str) or kind not in LINK_MESSAGES:
        raise WireError("unknown-kind", "not a link message")
    return LINK_MESSAGES[kind].from_value(raw)


# -- key schedule -----------------------------------------------------------------------


def _transcript(existing: bytes, new: bytes, nonce: bytes) -> bytes:
    return cbor.encode([_LABEL, existing, new, nonce])


def _derive(secret: bytes, transcript: bytes, person: bytes, size: int = 32) -> bytes:
    return blake2b(transcript, size=size, key=secret, person=person)


def _confirmation(secret: bytes, transcript: bytes) -> str:
    digits = int.from_bytes(_derive(secret, transcript, b"p2pchat-linksas", 8), "big") % 10**6
    text = f"{digits:06d}"
    return f"{text[:3]} {text[3:]}"


def _seal(key: bytes, transcript: bytes, plaintext: bytes, rng: Rng) -> bytes:
    nonce = rng(24)
    return nonce + crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, transcript, nonce, key)


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """A valid join, waiting for the user of the existing device to compare ``confirm``."""

    device: bytes
    name: str
    confirm: str


@dataclass(frozen=True, slots=True)
class LinkResult:
    """What the new device got: the account, its certificate and the device list."""

    account: Account
    certificate: DeviceCertificate
    devices: DeviceListRecord
    devices_record: bytes

    def __repr__(self) -> str:
        return f"<LinkResult account={self.account.account_key.hex()[:16]}…>"


# -- the existing device's side ---------------------------------------------------------


class LinkOffer:
    """One link code, valid once for ``ttl_ms`` (see the module docstring)."""

    def __init__(
        self,
        *,
        device_key: bytes,
        addrs: tuple[str, ...] = (),
        now: int,
        rng: Rng,
        ttl_ms: int = LINK_TTL_MS,
    ) -> None:
        self.code = LinkCode(device_key=device_key, secret=rng(_SECRET_LEN), addrs=addrs[:4])
        self.created = now
        self.expires = now + ttl_ms
        self.state = "waiting"
        self._bad_proofs = 0
        self._transcript = b""
        self.request: JoinRequest | None = None

    def __repr__(self) -> str:
        return f"<LinkOffer {self.state} expires={self.expires}>"

    def expired(self, now: int) -> bool:
        return now >= self.expires

    def receive_join(self, data: bytes, *, remote_device: bytes, now: int) -> JoinRequest:
        """Check a join (devices.md section 4.2 step 2); raises ``WireError`` with the reason
        to send back in a deny (see :meth:`deny`)."""
        if self.state != "waiting":
            raise WireError("busy", "this link code was already used")
        if self.expired(now):
            self.state = "expired"
            raise WireError("expired", "the link code has expired")
        message = decode_link_message(data)
        if not isinstance(message, LinkJoin):
            raise WireError("unexpected", "expected a join")
        if message.device != remote_device:
            raise WireError("wrong-sender", "the join names another device than the stream's")
        transcript = _transcript(self.code.device_key, message.device, message.nonce)
        expected = _derive(self.code.secret, transcript, b"p2pchat-linkprf")
        if not constant_time_equal(expected, message.proof):
            self._bad_proofs += 1
            if self._bad_proofs >= _MAX_BAD_PROOFS:
                self.state = "burnt"
            raise WireError("bad-proof", "the joiner does not know the link code")
        self._transcript = transcript
        self.state = "joined"
        self.request = JoinRequest(
            device=message.device,
            name=message.name,
            confirm=_confirmation(self.code.secret, transcript),
        )
        return self.request

    def certify(self, account: Account, *, now: int) -> DeviceCertificate:
        """The certificate of the joined device (no expiry, like the first device's)."""
        if self.state != "joined" or self.request is None:
            raise LocalProtocolError("no confirmed join to certify")
        return account.certify_device(self.request.device, now=now)

    def grant(
        self, *, account: Account, certificate: DeviceCertificate, devices_record: bytes, rng: Rng
    ) -> bytes:
        """The grant frame; the offer is spent."""
        if self.state != "joined" or self.request is None:
            raise LocalProtocolError("no confirmed join to grant")
        if certificate.device_key != self.request.device:
            raise LocalProtocolError("the certificate is for another device")
        content = GrantContent(
            account=account.to_bytes(), cert=certificate.encode(), devices=devices_record
        )
        box = self.seal(content.to_bytes(), rng=rng)
        self.state = "granted"
        return LinkGrant(t="grant", v=1, box=box).to_bytes()

    def deny(self, why: str = "refused") -> bytes:
        """A deny frame. ``refused`` (the user said no) spends the offer; other reasons
        (the join was bad) do not. A reason without its own slug is sent as ``bad-proof``."""
        if why == "refused":
            self.state = "denied"
        return self.deny_frame(why)

    @staticmethod
    def deny_frame(why: str) -> bytes:
        """A deny frame without an offer (none is open, or one is in use)."""
        return LinkDeny(t="deny", v=1, why=why if why in _DENY_REASONS else "bad-proof").to_bytes()

    def seal(self, plaintext: bytes, *, rng: Rng) -> bytes:
        """``nonce || XChaCha20-Poly1305`` under the link key (after a valid join)."""
        if self.state not in ("joined", "granted"):
            raise LocalProtocolError("no join to seal for")
        return _seal(
            _derive(self.code.secret, self._transcript, b"p2pchat-linkkey"),
            self._transcript,
            plaintext,
            rng,
        )

    def receive_done(self, data: bytes) -> None:
        if not isinstance(decode_link_message(data), LinkDone):
            raise WireError("unexpected", "expected done")


# -- the new device's side --------------------------------------------------------------

_DENIED = {
    "refused": "the other device refused the link (did the codes match?)",
    "expired": "the link code has expired: run `p2pchat devices link` again",
    "bad-proof": "the other device did not accept this link code (mistyped?)",
    "busy": "that link code was already used: run `p2pchat devices link` again",
    "revoked": "this device was revoked from that account",
    "full": "that account already has 16 devices: revoke one of them first",
}


class LinkJoiner:
    """The new device: sends the join, shows :attr:`confirm`, opens the grant."""

    def __init__(self, code: LinkCode, *, device_key: bytes, name: str, rng: Rng) -> None:
        if device_key == code.device_key:
            raise LocalProtocolError("a device cannot link to itself")
        self.code = code
        self.device_key = device_key
        self._nonce = rng(_NONCE_LEN)
        self._name = name
        self._transcript = _transcript(code.device_key, device_key, self._nonce)
        self.confirm = _confirmation(code.secret, self._transcript)

    def __repr__(self) -> str:
        return f"<LinkJoiner confirm={self.confirm}>"

    def join_message(self) -> bytes:
        proof = _derive(self.code.secret, self._transcript, b"p2pchat-linkprf")
        return LinkJoin(
            t="join", v=1, device=self.device_key, nonce=self._nonce, name=self._name, proof=proof
        ).to_bytes()

    def receive(self, data: bytes, *, now: int) -> LinkResult:
        """Open a grant (devices.md section 4.2 step 4); a deny raises
        ``PermissionDeniedError``, anything malformed ``WireError``."""
        message = decode_link_message(data)
        if isinstance(message, LinkDeny):
            raise PermissionDeniedError(_DENIED[message.why])
        if not isinstance(message, LinkGrant):
            raise WireError("unexpected", "expected a grant or a deny")
        plain = self.open(message.box)
        content = GrantContent.from_value(decode_map(plain, max_size=MAX_LINK_FRAME))
        try:
            account = Account.from_bytes(content.account)
            cert = DeviceCertificate.decode(content.cert)
            cert.verify(now=now)
        except CryptoError as exc:
            raise WireError("bad-grant", f"the granted account does not verify: {exc}") from None
        acct = account.account_key
        if cert.account_key != acct or cert.device_key != self.device_key:
            raise WireError("wrong-account", "the certificate is not for this device")
        record = validate_record(dht_key("devices", acct), content.devices, now=now, full_key=acct)
        devices = record.parsed
        assert isinstance(devices, DeviceListRecord)
        if self.device_key not in {entry.device for entry in devices.devices}:
            raise WireError("wrong-account", "the device list does not hold this device")
        if self.code.device_key not in {entry.device for entry in devices.devices}:
            raise WireError("wrong-account", "the linking device is not in its own list")
        return LinkResult(
            account=account, certificate=cert, devices=devices, devices_record=content.devices
        )

    def open(self, box: bytes) -> bytes:
        """Open a box sealed under the link key (``WireError("bad-proof")``)."""
        key = _derive(self.code.secret, self._transcript, b"p2pchat-linkkey")
        try:
            return bytes(
                crypto_aead_xchacha20poly1305_ietf_decrypt(
                    box[24:], self._transcript, box[:24], key
                )
            )
        except NaclError:
            raise WireError("bad-proof", "the box does not open with the link key") from None

    def done_message(self) -> bytes:
        return LinkDone(t="done", v=1).to_bytes()

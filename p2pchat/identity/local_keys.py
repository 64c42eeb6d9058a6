"""The node's local secret state besides the keystore: signed prekeys, the X3DH replay
cache, and sealing of session pickles. All of it lives in the store, sealed with the
keystore's ``local_key`` (XChaCha20-Poly1305), so the store file holds no usable secret.

Prekey policy: one signed prekey is current; a new one replaces it after half its
lifetime and the old one is kept until it expires, because initial messages made from
a bundle fetched earlier may still arrive. Expired prekeys are deleted, which also makes
replays of old initial messages undecryptable (X3DH spec, section 4.2).
"""

from __future__ import annotations

from p2pchat_crypto import cbor, sealed
from p2pchat_crypto.identity import Account, Device
from p2pchat_crypto.prekeys import PrekeyBundle, SignedPrekey
from p2pchat_crypto.ratchet import SESSION_PICKLE_KIND, Session
from p2pchat_crypto.replay import REPLAY_CACHE_PICKLE_KIND, ReplayCache
from p2pchat_crypto.sealed import Rng

from ..errors import StorageError, map_crypto_errors
from ..storage.base import Transaction

__all__ = ["LocalKeys"]

_PREKEYS_META = "prekeys"
_REPLAY_META = "replay-cache"
_BUNDLE_SEQ_META = "bundle-seq"
_PREKEY_SET_KIND = "p2pchat/prekey-set"


class LocalKeys:
    """Signed prekeys, the replay cache and session sealing for one node."""

    def __init__(
        self,
        *,
        account: Account,
        device: Device,
        local_key: bytes,
        rng: Rng,
        prekey_lifetime_ms: int,
    ) -> None:
        self._account = account
        self._device = device
        self._local_key = local_key
        self._rng = rng
        self._lifetime = prekey_lifetime_ms
        self.prekeys: dict[int, SignedPrekey] = {}
        self.replay_cache = ReplayCache()
        self.bundle_sequence = 0

    def __repr__(self) -> str:
        return f"LocalKeys(prekeys={sorted(self.prekeys)}, replay_entries={len(self.replay_cache)})"

    # -- persistence --------------------------------------------------------------------

    async def load(self, tx: Transaction) -> None:
        with map_crypto_errors():
            blob = await tx.get_meta(_PREKEYS_META)
            if blob is not None:
                version, body = sealed.unpack(self._open(blob, _PREKEY_SET_KIND), _PREKEY_SET_KIND)
                if version != 1 or not isinstance(body, list):
                    raise StorageError("unreadable prekey set in the store")
                loaded = [SignedPrekey.from_bytes(item) for item in body]
                self.prekeys = {p.prekey_id: p for p in loaded}
            blob = await tx.get_meta(_REPLAY_META)
            if blob is not None:
                self.replay_cache = ReplayCache.from_bytes(
                    self._open(blob, REPLAY_CACHE_PICKLE_KIND)
                )
        seq = await tx.get_meta(_BUNDLE_SEQ_META)
        self.bundle_sequence = int.from_bytes(seq, "big") if seq else 0

    async def save_prekeys(self, tx: Transaction) -> None:
        body = [p.to_bytes() for p in sorted(self.prekeys.values(), key=lambda p: p.prekey_id)]
        await tx.put_meta(_PREKEYS_META, self._seal(sealed.pack(_PREKEY_SET_KIND, 1, body)))
        await tx.put_meta(_BUNDLE_SEQ_META, self.bundle_sequence.to_bytes(8, "big"))

    async def save_replay_cache(self, tx: Transaction) -> None:
        await tx.put_meta(_REPLAY_META, self._seal(self.replay_cache.to_bytes()))

    # -- prekeys ------------------------------------------------------------------------

    @property
    def current_prekey(self) -> SignedPrekey | None:
        return max(self.prekeys.values(), key=lambda p: p.created, default=None)

    def needs_rotation(self, now: int) -> bool:
        current = self.current_prekey
        return current is None or now >= current.created + self._lifetime // 2

    def rotate(self, now: int) -> SignedPrekey:
        """Make a new current prekey; drop expired ones. Call :meth:`save_prekeys` after."""
        self.prekeys = {i: p for i, p in self.prekeys.items() if not p.is_expired(now=now)}
        next_id = (max(self.prekeys, default=0) + 1) % 2**32
        prekey = SignedPrekey.generate(
            self._rng, prekey_id=next_id, now=now, expires=now + self._lifetime
        )
        self.prekeys[prekey.prekey_id] = prekey
        self.bundle_sequence += 1
        self.replay_cache.prune(now=now)
        return prekey

    def bundle(self) -> PrekeyBundle:
        """Our signed bundle for the current prekey (rotate first if there is none)."""
        current = self.current_prekey
        if current is None:
            raise StorageError("no signed prekey yet")
        with map_crypto_errors():
            return PrekeyBundle.create(
                self._account, self._device.certificate, current, sequence=self.bundle_sequence
            )

    # -- sessions -----------------------------------------------------------------------

    def seal_session(self, session: Session) -> bytes:
        return self._seal(session.to_bytes())

    def open_session(self, blob: bytes) -> Session:
        with map_crypto_errors():
            return Session.from_bytes(self._open(blob, SESSION_PICKLE_KIND))

    def seal_blob(self, kind: str, body: cbor.Value) -> bytes:
        """Seal a small node-local record (e.g. an outbox entry) under the local key."""
        return self._seal(sealed.pack(kind, 1, body))

    def open_blob(self, kind: str, blob: bytes) -> object:
        with map_crypto_errors():
            version, body = sealed.unpack(self._open(blob, kind), kind)
        if version != 1:
            raise StorageError(f"unknown {kind} version {version}")
        return body

    def _seal(self, pickle: bytes) -> bytes:
        return sealed.seal(pickle, self._local_key, self._rng)

    def _open(self, blob: bytes, kind: str) -> bytes:
        with map_crypto_errors():
            return sealed.unseal(blob, self._local_key, kind)

"""The DHT directory: publish our signed records, find and verify everyone else's.

Records (``protocol-spec/wire.md``, "DHT records"):

* ``/p2pchat/devices/<account>``: the account's device list, signed by the account key;
* ``/p2pchat/prekeys/<device>``: the device's prekey bundle, signed by the device key
  (the bundle inside is itself signed by the account key);
* ``/p2pchat/mailbox/<account>``: where mail for the account waits (optional).

Everything read from the DHT passes :func:`p2pchat.protocol.records.validate_record`
(signature, expiry, size, namespace) *and* the crypto checks of its content (device
certificate, bundle signature, owner) before anything else sees it: garbage from the DHT
never reaches the crypto core unchecked. Verified records are cached in the store, so a
peer's bundle is found again while the DHT is unreachable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from p2pchat_crypto.errors import CryptoError
from p2pchat_crypto.identity import Account, Device, DeviceCertificate
from p2pchat_crypto.prekeys import PrekeyBundle

from ..errors import NetworkError, NotFoundError, WireError
from ..net.base import Network, PeerInfo
from ..protocol.records import (
    DeviceEntry,
    DeviceListRecord,
    MailboxEntry,
    MailboxRecord,
    PrekeyRecord,
    Record,
    dht_key,
    select_record,
    sign_record,
    validate_record,
)
from ..protocol.signing import ExternalSigner
from ..storage.base import Store
from ..storage.records import DhtRecord
from .local_keys import LocalKeys
from .peerid import peer_id_from_ed25519

__all__ = ["Directory", "RecordRules", "DHT_NAMESPACE"]

logger = logging.getLogger(__name__)

#: The DHT namespace (first key segment) of every p2pchat record.
DHT_NAMESPACE = "p2pchat"


class RecordRules:
    """The DHT's validator for ``/p2pchat/...`` keys (runs inside DHT request handlers)."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self._clock = clock

    def validate(self, key: str, value: bytes) -> bool:
        try:
            validate_record(key, value, now=self._clock())
        except WireError:
            return False
        return True

    def select(self, key: str, values: Sequence[bytes]) -> int:
        try:
            return select_record(key, values, now=self._clock())
        except WireError:
            return 0


class Directory:
    """Our records out, others' records in (verified, cached)."""

    def __init__(
        self,
        *,
        network: Network,
        store: Store,
        clock: Callable[[], int],
        account: Account,
        device: Device,
        local_keys: LocalKeys,
        record_lifetime_ms: int,
        device_list: Callable[[], DeviceListRecord] | None = None,
    ) -> None:
        """``device_list``: the account's device list to publish (devices.md section 2);
        by default a list of this one device."""
        self._network = network
        self._store = store
        self._clock = clock
        self._account = account
        self._device = device
        self._local_keys = local_keys
        self._account_signer = ExternalSigner(account.account_key, account.sign)
        self._device_signer = ExternalSigner(device.public_key, device.sign)
        self._lifetime = record_lifetime_ms
        self._device_list = device_list or self._single_device
        self._seq = 0
        self.published_at: int | None = None
        #: The signed device list we last published (what the contacts are told).
        self.device_list_value: bytes | None = None
        network.dht.register_namespace(DHT_NAMESPACE, RecordRules(clock))

    # -- publishing ---------------------------------------------------------------------

    def _single_device(self) -> DeviceListRecord:
        entry = DeviceEntry(device=self._device.public_key, cert=self._device.certificate.encode())
        return DeviceListRecord(devices=(entry,))

    def _next_seq(self) -> tuple[int, int]:
        now = self._clock()
        # A strictly increasing seq across restarts without storing it: the clock.
        self._seq = max(self._seq + 1, now)
        return self._seq, now + self._lifetime

    def sign_device_list(
        self, devices: DeviceListRecord, seq_expires: tuple[int, int] | None = None
    ) -> bytes:
        """The signed ``devices`` record of our account for ``devices`` (the next seq)."""
        seq, expires = seq_expires or self._next_seq()
        account_key = self._account.account_key
        return sign_record(
            devices,
            ns="devices",
            key=account_key,
            seq=seq,
            expires=expires,
            signing_key=self._account_signer,
        )

    async def publish_device_list(self) -> None:
        """Publish the account's device list now (after a link or a revocation)."""
        key = dht_key("devices", self._account.account_key)
        value = self.sign_device_list(self._device_list())
        self.device_list_value = value
        await self._network.dht.put(key, value)

    async def publish(self, *, mailboxes: Sequence[PeerInfo] = ()) -> None:
        """(Re-)publish the device list, the prekey bundle and, if any, mailboxes."""
        account_key = self._account.account_key
        now = self._clock()
        seq, expires = self._next_seq()
        devices = self.sign_device_list(self._device_list(), (seq, expires))
        self.device_list_value = devices
        records = [
            (dht_key("devices", account_key), devices),
            (
                dht_key("prekeys", self._device.public_key),
                sign_record(
                    PrekeyRecord(bundle=self._local_keys.bundle().encode()),
                    ns="prekeys",
                    key=self._device.public_key,
                    seq=self._seq,
                    expires=expires,
                    signing_key=self._device_signer,
                ),
            ),
        ]
        if mailboxes:
            entries = tuple(MailboxEntry(peer=m.peer_id, addrs=m.addrs[:8]) for m in mailboxes)
            records.append(
                (
                    dht_key("mailbox", account_key),
                    sign_record(
                        MailboxRecord(mailboxes=entries[:4]),
                        ns="mailbox",
                        key=account_key,
                        seq=self._seq,
                        expires=expires,
                        signing_key=self._account_signer,
                    ),
                )
            )
        for key, value in records:
            await self._network.dht.put(key, value)
        self.published_at = now

    # -- lookups ------------------------------------------------------------------------

    async def _record(self, ns: str, key: bytes) -> Record:
        """The best valid record, from the DHT or (if unreachable/absent) the cache."""
        text_key = dht_key(ns, key)
        now = self._clock()
        try:
            values = await self._network.dht.get(text_key)
        except NetworkError as exc:
            logger.debug("DHT get %s failed: %s", text_key, exc)
            values = []
        best: tuple[Record, bytes] | None = None
        for value in values:
            try:
                record = validate_record(text_key, value, now=now, full_key=key)
            except WireError:
                continue
            if best is None or record.seq > best[0].seq:
                best = (record, value)
        if best is not None:
            record, value = best
            await self._store.put_dht(
                DhtRecord(
                    key=text_key.encode(), value=value, seq=record.seq, expires_at=record.expires
                )
            )
            return record
        cached = await self._store.get_dht(text_key.encode(), now=now)
        if cached is not None:
            try:
                return validate_record(text_key, cached.value, now=now, full_key=key)
            except WireError:
                pass
        raise NotFoundError(f"no valid {ns} record for {key.hex()[:16]}… in the DHT")

    async def device_list_of(self, account_key: bytes) -> DeviceListRecord | None:
        """The account's validated device list (with its revocations), None if none."""
        record = await self.device_record_of(account_key)
        if record is None:
            return None
        assert isinstance(record.parsed, DeviceListRecord)
        return record.parsed

    async def device_record_of(self, account_key: bytes) -> Record | None:
        """The account's validated signed device list record (its ``seq``), None if none."""
        try:
            return await self._record("devices", account_key)
        except NotFoundError:
            return None

    async def accept_device_list(self, account_key: bytes, value: bytes) -> Record:
        """Validate a signed device list a peer sent us exactly as a DHT lookup does (the
        account's signature, its key, expiry) and cache it like one; :class:`WireError`
        if it is not a valid list of ``account_key``."""
        text_key = dht_key("devices", account_key)
        record = validate_record(text_key, value, now=self._clock(), full_key=account_key)
        if not isinstance(record.parsed, DeviceListRecord):
            raise WireError("bad-value", "not a device list")
        await self._store.put_dht(
            DhtRecord(key=text_key.encode(), value=value, seq=record.seq, expires_at=record.expires)
        )
        return record

    async def devices_of(self, account_key: bytes) -> list[DeviceCertificate]:
        """The account's currently certified devices (each certificate verified)."""
        try:
            record = await self._record("devices", account_key)
        except NotFoundError:
            raise NotFoundError(
                "account not found: no record of it in the DHT (is the key right, and has "
                "that node been online?)"
            ) from None
        body = record.parsed
        assert isinstance(body, DeviceListRecord)
        devices = self.certified(body, account_key)
        if not devices:
            raise NotFoundError("the account publishes no valid device")
        return devices

    def certified(self, body: DeviceListRecord, account_key: bytes) -> list[DeviceCertificate]:
        """The devices of ``body`` whose certificate by ``account_key`` verifies now."""
        now = self._clock()
        devices = []
        for entry in body.devices:
            try:
                cert = DeviceCertificate.decode(entry.cert)
                cert.verify(now=now)
            except CryptoError:
                continue
            if cert.account_key == account_key and cert.device_key == entry.device:
                devices.append(cert)
        return devices

    async def bundle_of_device(
        self, device_key: bytes, *, account_key: bytes | None = None
    ) -> PrekeyBundle:
        """The device's verified prekey bundle (owned by ``account_key`` if given)."""
        record = await self._record("prekeys", device_key)
        body = record.parsed
        assert isinstance(body, PrekeyRecord)
        try:
            bundle = PrekeyBundle.decode(body.bundle)
            bundle.verify(now=self._clock(), account_key=account_key)
        except CryptoError as exc:
            raise NotFoundError(f"the published prekey bundle is not valid: {exc}") from None
        if bundle.device_certificate.device_key != device_key:
            raise NotFoundError("the prekey bundle names another device")
        return bundle

    async def bundle_of_account(self, account_key: bytes) -> PrekeyBundle:
        """A verified bundle of one of the account's devices (the newest certificate)."""
        devices = await self.devices_of(account_key)
        devices.sort(key=lambda cert: cert.created, reverse=True)
        last: NotFoundError | None = None
        for cert in devices:
            try:
                return await self.bundle_of_device(cert.device_key, account_key=account_key)
            except NotFoundError as exc:
                last = exc
        raise last or NotFoundError("no device of the account has a prekey bundle")

    async def mailboxes_of(self, account_key: bytes) -> list[PeerInfo]:
        try:
            record = await self._record("mailbox", account_key)
        except NotFoundError:
            return []
        body = record.parsed
        assert isinstance(body, MailboxRecord)
        return [PeerInfo(peer_id=m.peer, addrs=tuple(m.addrs)) for m in body.mailboxes]

    async def locate(self, device_key: bytes) -> PeerInfo | None:
        """Addresses of a device's node, via DHT peer routing (None if not found)."""
        peer_id = peer_id_from_ed25519(device_key)
        try:
            return await self._network.dht.find_peer(peer_id)
        except NetworkError as exc:
            logger.debug("find_peer %s failed: %s", peer_id, exc)
            return None

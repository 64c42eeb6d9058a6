"""The sans-IO link protocol and device list (protocol-spec/devices.md sections 2 and 4)."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from p2pchat.errors import LocalProtocolError, PermissionDeniedError, WireError
from p2pchat.protocol.device_link import LinkCode, LinkJoiner, LinkOffer, decode_link_message
from p2pchat.protocol.device_list import (
    add_device,
    current_devices,
    merge_lists,
    revoke_device,
    revoked_devices,
    single_device_list,
)
from p2pchat.protocol.records import (
    DeviceEntry,
    DeviceListRecord,
    Revocation,
    dht_key,
    sign_record,
    validate_record,
)
from p2pchat.protocol.signing import ExternalSigner
from p2pchat_crypto.identity import Account, Device
from tests.conftest import DeterministicRng

NOW = 1_700_000_000_000


def _setup(seed: str = "a") -> tuple[Account, Device, DeterministicRng]:
    rng = DeterministicRng(seed)
    account = Account.generate(rng)
    return account, Device.generate(account, rng, now=NOW), rng


def _entry(device: Device) -> DeviceEntry:
    return DeviceEntry(device=device.public_key, cert=device.certificate.encode())


def _signer(account: Account) -> ExternalSigner:
    return ExternalSigner(account.account_key, account.sign)


def _record(account: Account, body: DeviceListRecord, seq: int = 1) -> bytes:
    return sign_record(
        body,
        ns="devices",
        key=account.account_key,
        seq=seq,
        expires=NOW + 86_400_000,
        signing_key=_signer(account),
    )


def _new_device_key(rng: DeterministicRng) -> tuple[bytes, bytes]:
    seed = rng(32)
    return seed, bytes(SigningKey(seed).verify_key)


def test_code_round_trip_and_damage() -> None:
    code = LinkCode(device_key=b"k" * 32, secret=b"s" * 16, addrs=("/ip4/127.0.0.1/tcp/1",))
    text = code.encode()
    assert text.startswith("p2pchat-link:")
    assert LinkCode.parse(f"  {text[:20]}\n{text[20:]} ") == code  # pasted across lines
    assert "s" * 16 not in repr(code)
    assert "secret" not in repr(code)
    with pytest.raises(WireError) as info:
        LinkCode.parse(text[:-3])
    assert info.value.reason == "bad-code"
    with pytest.raises(WireError):
        LinkCode.parse("hello")


def test_link_happy_path_grants_the_account() -> None:
    account, existing, rng = _setup()
    seed, new_key = _new_device_key(rng)
    offer = LinkOffer(device_key=existing.public_key, now=NOW, rng=rng)
    joiner = LinkJoiner(
        LinkCode.parse(offer.code.encode()), device_key=new_key, name="desk", rng=rng
    )
    request = offer.receive_join(joiner.join_message(), remote_device=new_key, now=NOW + 1000)
    assert request.confirm == joiner.confirm
    assert len(request.confirm) == 7
    assert request.name == "desk"
    assert request.device == new_key
    cert = offer.certify(account, now=NOW + 1000)
    body = add_device(
        single_device_list(_entry(existing)), DeviceEntry(device=new_key, cert=cert.encode())
    )
    grant = offer.grant(
        account=account, certificate=cert, devices_record=_record(account, body), rng=rng
    )
    assert account.to_bytes() not in grant  # sealed under the link key
    result = joiner.receive(grant, now=NOW + 2000)
    assert result.account.account_key == account.account_key
    assert Device(signing_seed=seed, certificate=result.certificate).public_key == new_key
    assert set(current_devices(result.devices)) == {existing.public_key, new_key}
    offer.receive_done(joiner.done_message())
    # The offer is spent: a second join is refused.
    with pytest.raises(WireError) as info:
        offer.receive_join(joiner.join_message(), remote_device=new_key, now=NOW + 3000)
    assert info.value.reason == "busy"


def test_a_leaked_code_used_by_another_device_shows_another_confirmation() -> None:
    _, existing, rng = _setup()
    offer = LinkOffer(device_key=existing.public_key, now=NOW, rng=rng)
    code = LinkCode.parse(offer.code.encode())
    _, mine = _new_device_key(rng)
    _, thief = _new_device_key(rng)
    users = LinkJoiner(code, device_key=mine, name="mine", rng=rng)
    thiefs = LinkJoiner(code, device_key=thief, name="mine", rng=rng)
    request = offer.receive_join(thiefs.join_message(), remote_device=thief, now=NOW)
    assert request.confirm != users.confirm  # the user compares and refuses
    deny = offer.deny("refused")
    with pytest.raises(PermissionDeniedError, match="refused"):
        users.receive(deny, now=NOW)
    assert offer.state == "denied"


def test_join_refusals() -> None:
    account, existing, rng = _setup()
    _, new_key = _new_device_key(rng)
    offer = LinkOffer(device_key=existing.public_key, now=NOW, rng=rng)
    joiner = LinkJoiner(offer.code, device_key=new_key, name="x", rng=rng)
    # The stream's peer differs from the device the join names.
    with pytest.raises(WireError) as info:
        offer.receive_join(joiner.join_message(), remote_device=b"z" * 32, now=NOW)
    assert info.value.reason == "wrong-sender"
    # A joiner who does not know the secret; three such attempts burn the offer.
    wrong = LinkJoiner(
        LinkCode(device_key=existing.public_key, secret=b"w" * 16),
        device_key=new_key,
        name="x",
        rng=rng,
    )
    for _ in range(3):
        with pytest.raises(WireError) as info:
            offer.receive_join(wrong.join_message(), remote_device=new_key, now=NOW)
        assert info.value.reason == "bad-proof"
    assert offer.state == "burnt"
    with pytest.raises(WireError):
        offer.receive_join(joiner.join_message(), remote_device=new_key, now=NOW)
    # Expiry after five minutes.
    late = LinkOffer(device_key=existing.public_key, now=NOW, rng=rng)
    joiner2 = LinkJoiner(late.code, device_key=new_key, name="x", rng=rng)
    with pytest.raises(WireError) as info:
        late.receive_join(joiner2.join_message(), remote_device=new_key, now=NOW + 5 * 60_000)
    assert info.value.reason == "expired"
    with pytest.raises(LocalProtocolError):
        late.certify(account, now=NOW)
    with pytest.raises(WireError):
        decode_link_message(b"\xa1at\x64nope")


def test_a_grant_for_another_device_or_damaged_is_refused() -> None:
    account, existing, rng = _setup()
    _, new_key = _new_device_key(rng)
    offer = LinkOffer(device_key=existing.public_key, now=NOW, rng=rng)
    joiner = LinkJoiner(offer.code, device_key=new_key, name="x", rng=rng)
    offer.receive_join(joiner.join_message(), remote_device=new_key, now=NOW)
    cert = offer.certify(account, now=NOW)
    # A list that does not hold the new device.
    grant = offer.grant(
        account=account,
        certificate=cert,
        devices_record=_record(account, single_device_list(_entry(existing))),
        rng=rng,
    )
    with pytest.raises(WireError) as info:
        joiner.receive(grant, now=NOW)
    assert info.value.reason == "wrong-account"
    # A flipped bit in the box.
    damaged = bytearray(grant)
    damaged[-5] ^= 1
    with pytest.raises(WireError) as info:
        joiner.receive(bytes(damaged), now=NOW)
    assert info.value.reason in ("bad-proof", "wrong-type")


def test_device_list_merge_is_sticky_and_commutative() -> None:
    account, first, rng = _setup()
    second = Device.generate(account, rng, now=NOW)
    third = Device.generate(account, rng, now=NOW)
    base = add_device(single_device_list(_entry(first)), _entry(second))
    revoked, revocation = revoke_device(
        base, second.public_key, now=NOW, signing_key=_signer(account)
    )
    revocation.verify()
    other = add_device(base, _entry(third))  # a device that missed the revocation
    merged = merge_lists(other, revoked)
    assert merged == merge_lists(revoked, other)
    assert set(current_devices(merged)) == {first.public_key, third.public_key}
    assert revoked_devices(merged) == (second.public_key,)
    with pytest.raises(LocalProtocolError):
        add_device(merged, _entry(second))  # never comes back
    with pytest.raises(LocalProtocolError):
        revoke_device(
            single_device_list(_entry(first)),
            first.public_key,
            now=NOW,
            signing_key=_signer(account),
        )
    # The record validates (revocations checked) and DHT readers refuse forged ones.
    data = _record(account, merged)
    validate_record(
        dht_key("devices", account.account_key), data, now=NOW, full_key=account.account_key
    )
    stranger = Account.generate(rng)
    forged = Revocation.sign(device=first.public_key, at=NOW, signing_key=_signer(stranger))
    bad = DeviceListRecord(devices=(_entry(third),), revoked=(forged,))
    with pytest.raises(WireError) as info:
        validate_record(dht_key("devices", account.account_key), _record(account, bad), now=NOW)
    assert info.value.reason == "wrong-signer"
    listed = DeviceListRecord(devices=(_entry(first), _entry(second)), revoked=(revocation,))
    with pytest.raises(WireError) as info:
        validate_record(dht_key("devices", account.account_key), _record(account, listed), now=NOW)
    assert info.value.reason == "revoked-device"


def test_a_full_list_refuses_a_seventeenth_device() -> None:
    account, first, rng = _setup()
    body = single_device_list(_entry(first))
    for _ in range(15):
        body = add_device(body, _entry(Device.generate(account, rng, now=NOW)))
    assert len(body.devices) == 16
    with pytest.raises(LocalProtocolError, match="at most 16"):
        add_device(body, _entry(Device.generate(account, rng, now=NOW)))

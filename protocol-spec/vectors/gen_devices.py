"""Device-linking vectors (protocol-spec/vectors/devices/): link codes, link messages, device
lists with revocations (devices.md). Deterministic: keys from fixed seeds, fixed times.

Each vector names a ``check`` (a pipeline, implemented by :func:`run_check`):

* ``link-code``: parse ``code`` (text); a valid one also gives ``device_key``, ``secret``, ``addrs``;
* ``link-join``: an existing device with key ``existing`` and secret ``secret`` receives the join
  ``hex`` on a stream from ``remote`` at ``now`` (devices.md section 4.2 step 2); a valid one
  gives ``confirm``;
* ``link-grant``: the new device (key ``remote``, nonce ``nonce``) opens the grant ``hex`` for the
  code (``existing``, ``secret``) at ``now`` (step 4);
* ``link-sync``: the new device (as for ``link-grant``) opens the sync frame ``hex`` (devices.md
  section 4.3); a valid one gives the contacts and groups it holds;
* ``link-message``: strict decoding of one link frame;
* ``history-message``: strict decoding of one frame of ``/p2pchat/history/1.0.0``
  (devices.md section 4.4);
* ``history-chunk``: the new device (seed ``new_seed``) opens the chunk ``hex`` as chunk
  number ``index`` of the sync with the existing device ``existing`` and the request nonce
  ``nonce``; a valid one gives its messages and ``left``;
* ``record``: the DHT validator of wire.md section 10 with devices.md section 2's additions, for
  ``dht_key`` at ``now``.

Invalid vectors carry the ``reason`` slug the check must fail with.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from p2pchat_crypto import cbor
from p2pchat_crypto.identity import Account, Device

from p2pchat.errors import PermissionDeniedError, WireError
from p2pchat.protocol.device_link import (
    LinkCode,
    LinkDeny,
    LinkDone,
    LinkJoiner,
    LinkOffer,
    decode_link_message,
)
from p2pchat.protocol.content import Content
from p2pchat.protocol.device_history import (
    HistoryBox,
    HistoryChunk,
    HistoryChunkContent,
    HistoryCursor,
    HistoryDeny,
    HistoryItem,
    HistoryRequest,
    decode_history_message,
)
from p2pchat.protocol.device_list import add_device, revoke_device, single_device_list
from p2pchat.protocol.device_sync import (
    LinkSync,
    SyncContact,
    SyncContent,
    SyncGroup,
    decode_sync_content,
    decode_sync_frame,
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

HERE = Path(__file__).resolve().parent
NOW = 1_767_225_600_000


class _Seeded:
    def __init__(self, name: str) -> None:
        self._seed, self._n = name.encode(), 0

    def __call__(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(self._seed + self._n.to_bytes(8, "big")).digest()
            self._n += 1
        return out[:n]


def _entry(device: Device) -> DeviceEntry:
    return DeviceEntry(device=device.public_key, cert=device.certificate.encode())


def _record(account: Account, body: DeviceListRecord, seq: int = 1) -> bytes:
    return sign_record(
        body,
        ns="devices",
        key=account.account_key,
        seq=seq,
        expires=NOW + 86_400_000,
        signing_key=ExternalSigner(account.account_key, account.sign),
    )


def run_check(vector: dict[str, Any]) -> dict[str, Any]:
    """Run a vector's pipeline; returns what a valid one yields, raises ``WireError``."""
    check = vector["check"]
    if check == "link-code":
        code = LinkCode.parse(vector["code"])
        return {
            "device_key": code.device_key.hex(),
            "secret": code.secret.hex(),
            "addrs": list(code.addrs),
        }
    data = bytes.fromhex(vector["hex"])
    if check == "link-message":
        decode_link_message(data)
        return {}
    if check == "history-message":
        decode_history_message(data)
        return {}
    if check == "history-chunk":
        box = HistoryBox(
            existing=bytes.fromhex(vector["existing"]),
            new=bytes.fromhex(vector["remote"]),
            own_seed=bytes.fromhex(vector["new_seed"]),
            nonce=bytes.fromhex(vector["nonce"]),
        )
        message = decode_history_message(data)
        if not isinstance(message, HistoryChunk):
            raise WireError("unexpected", "not a chunk")
        content = box.open(message, expected=vector["index"])
        return {
            "items": [[i.id.hex(), i.peer.hex(), i.pos, i.out, i.ts] for i in content.items],
            "left": content.left,
        }
    if check == "record":
        validate_record(vector["dht_key"], data, now=vector["now"])
        return {}
    secret = bytes.fromhex(vector["secret"])
    existing = bytes.fromhex(vector["existing"])
    remote = bytes.fromhex(vector["remote"])
    if check == "link-join":
        offer = LinkOffer(device_key=existing, now=NOW, rng=lambda n: secret)
        request = offer.receive_join(data, remote_device=remote, now=vector["now"])
        return {"confirm": request.confirm}
    nonce = bytes.fromhex(vector["nonce"])
    joiner = LinkJoiner(
        LinkCode(device_key=existing, secret=secret),
        device_key=remote,
        name="x",
        rng=lambda n: nonce,
    )
    if check == "link-sync":
        content = decode_sync_content(joiner.open(decode_sync_frame(data).box))
        return {
            "contacts": [[c.account.hex(), c.name, c.state, c.verified] for c in content.contacts],
            "groups": [[g.group.hex(), g.invite] for g in content.groups],
        }
    if check == "link-grant":
        try:
            result = joiner.receive(data, now=vector["now"])
        except PermissionDeniedError:
            raise WireError("denied", "the grant is a deny") from None
        return {"account": result.account.account_key.hex()}
    raise ValueError(check)


def _vectors() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rng = _Seeded("devices-vectors")
    account = Account.generate(rng)
    first = Device.generate(account, rng, now=NOW)
    new_seed = rng(32)
    nonce_rng = _Seeded("joiner-nonce")
    secret_rng = _Seeded("link-secret")
    offer = LinkOffer(
        device_key=first.public_key, addrs=("/ip4/127.0.0.1/tcp/4001",), now=NOW, rng=secret_rng
    )
    from nacl.signing import SigningKey

    new_key = bytes(SigningKey(new_seed).verify_key)
    nonce = _Seeded("joiner-nonce")(16)
    joiner = LinkJoiner(offer.code, device_key=new_key, name="desktop", rng=nonce_rng)
    join = joiner.join_message()
    offer.receive_join(join, remote_device=new_key, now=NOW + 1000)
    cert = offer.certify(account, now=NOW + 1000)
    listed = add_device(
        single_device_list(_entry(first)), DeviceEntry(device=new_key, cert=cert.encode())
    )
    list_record = _record(account, listed)
    grant = offer.grant(
        account=account, certificate=cert, devices_record=list_record, rng=_Seeded("box-nonce")
    )
    sync = SyncContent(
        contacts=(SyncContact(account=b"\x0b" * 32, name="Bob", state="accepted", verified=True),),
        groups=(
            SyncGroup(group=b"\x0c" * 32),
            SyncGroup(group=b"\x0d" * 32, invite="p2pchat-invite:example"),
        ),
    )
    sync_frame = LinkSync(
        t="sync", v=1, box=offer.seal(sync.to_bytes(), rng=_Seeded("sync-nonce"))
    ).to_bytes()
    common = {
        "existing": first.public_key.hex(),
        "secret": offer.code.secret.hex(),
        "remote": new_key.hex(),
        "nonce": nonce.hex(),
        "now": NOW + 1000,
    }
    third = Device.generate(account, rng, now=NOW)
    with_third = add_device(listed, _entry(third))
    signer = ExternalSigner(account.account_key, account.sign)
    revoked, revocation = revoke_device(with_third, new_key, now=NOW + 5000, signing_key=signer)
    devices_key = dht_key("devices", account.account_key)
    valid: list[dict[str, Any]] = [
        {"name": "link code", "check": "link-code", "code": offer.code.encode()},
        {
            "name": "link join",
            "check": "link-join",
            "rule": "link-join",
            "hex": join.hex(),
            **common,
        },
        {
            "name": "link grant",
            "check": "link-grant",
            "rule": "link-grant",
            "hex": grant.hex(),
            **common,
        },
        {
            "name": "link sync",
            "check": "link-sync",
            "rule": "link-sync",
            "hex": sync_frame.hex(),
            **common,
        },
        {
            "name": "link deny",
            "check": "link-message",
            "rule": "link-deny",
            "hex": LinkDeny(t="deny", v=1, why="refused").to_bytes().hex(),
        },
        {
            "name": "link done",
            "check": "link-message",
            "rule": "link-done",
            "hex": LinkDone(t="done", v=1).to_bytes().hex(),
        },
        {
            "name": "device list after a link",
            "check": "record",
            "rule": "record",
            "hex": list_record.hex(),
            "dht_key": devices_key,
            "now": NOW,
        },
        {
            "name": "device list with a revocation",
            "check": "record",
            "rule": "record",
            "hex": _record(account, revoked, 2).hex(),
            "dht_key": devices_key,
            "now": NOW,
        },
    ]
    stranger = Account.generate(rng)
    forged = Revocation.sign(
        device=first.public_key,
        at=NOW,
        signing_key=ExternalSigner(stranger.account_key, stranger.sign),
    )
    bad_sig = Revocation.from_value({**revocation.to_value(), "at": NOW + 6000})
    lists_bad = [
        (
            "device list: revocation by another account",
            DeviceListRecord(devices=(_entry(third),), revoked=(forged,)),
            "wrong-signer",
        ),
        (
            "device list: revocation with a bad signature",
            DeviceListRecord(devices=(_entry(third),), revoked=(bad_sig,)),
            "bad-signature",
        ),
        (
            "device list: a revoked device listed",
            DeviceListRecord(
                devices=(_entry(first), DeviceEntry(device=new_key, cert=cert.encode())),
                revoked=(revocation,),
            ),
            "revoked-device",
        ),
        (
            "device list: a device twice",
            DeviceListRecord(devices=(_entry(first), _entry(first))),
            "duplicate",
        ),
        (
            "device list: revoked twice",
            DeviceListRecord(devices=(_entry(first),), revoked=(revocation, revocation)),
            "duplicate",
        ),
    ]
    wrong_secret = LinkJoiner(
        LinkCode(device_key=first.public_key, secret=b"\x00" * 16),
        device_key=new_key,
        name="x",
        rng=_Seeded("joiner-nonce"),
    )
    damaged = bytearray(grant)
    damaged[-1] ^= 1
    invalid: list[dict[str, Any]] = [
        {
            "name": "link code: damaged",
            "check": "link-code",
            "code": offer.code.encode()[:-4],
            "reason": "bad-code",
        },
        {
            "name": "link code: other prefix",
            "check": "link-code",
            "code": "p2pchat-invite:" + offer.code.encode()[13:],
            "reason": "bad-code",
        },
        {
            "name": "link join: wrong secret",
            "check": "link-join",
            "hex": wrong_secret.join_message().hex(),
            **common,
            "reason": "bad-proof",
        },
        {
            "name": "link join: from another peer",
            "check": "link-join",
            "hex": join.hex(),
            **{**common, "remote": first.public_key.hex()},
            "reason": "wrong-sender",
        },
        {
            "name": "link join: after 5 minutes",
            "check": "link-join",
            "hex": join.hex(),
            **{**common, "now": NOW + 300_000},
            "reason": "expired",
        },
        {
            "name": "link grant: damaged box",
            "check": "link-grant",
            "hex": bytes(damaged).hex(),
            **common,
            "reason": "bad-proof",
        },
        {
            "name": "link grant: for another device",
            "check": "link-grant",
            "hex": grant.hex(),
            **{**common, "remote": third.public_key.hex()},
            "reason": "bad-proof",
        },
        {
            "name": "link sync: sealed for another join",
            "check": "link-sync",
            "hex": sync_frame.hex(),
            **{**common, "nonce": "00" * 16},
            "reason": "bad-proof",
        },
        {
            "name": "link message: unknown kind",
            "check": "link-message",
            "hex": cbor.encode({"t": "hello", "v": 1}).hex(),
            "reason": "unknown-kind",
        },
        {
            "name": "link message: join without proof",
            "check": "link-message",
            "hex": cbor.encode(
                {k: v for k, v in cbor.decode(join, max_size=8192).items() if k != "proof"}
            ).hex(),
            "reason": "missing-field",
        },
    ]
    history_valid, history_invalid = _history_vectors(first, new_seed, new_key, account)
    valid += history_valid
    invalid += history_invalid
    for name, body, reason in lists_bad:
        invalid.append(
            {
                "name": name,
                "check": "record",
                "hex": _record(account, body).hex(),
                "dht_key": devices_key,
                "now": NOW,
                "reason": reason,
            }
        )
    return valid, invalid


def _history_vectors(
    first: Device, new_seed: bytes, new_key: bytes, account: Account
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Frames of ``/p2pchat/history/1.0.0``: a request, a deny, two chunks of a sync."""
    nonce = _Seeded("history-nonce")(16)
    bob = b"\x0b" * 32
    request = HistoryRequest(
        t="hreq",
        v=1,
        nonce=nonce,
        since=NOW - 30 * 86_400_000,
        max=1000,
        after=HistoryCursor(peer=bob, pos=2),
    )
    box = HistoryBox(
        existing=first.public_key, new=new_key, own_seed=first.signing_seed(), nonce=nonce
    )
    body = Content(type="p2pchat/text", body={}, text="hello").to_bytes()
    item = HistoryItem(
        peer=bob,
        pos=3,
        id=b"\x01" * 16,
        sender=bob,
        device=b"\x0e" * 32,
        out=False,
        ts=NOW - 1000,
        rx=NOW - 900,
        type="p2pchat/text",
        body=body,
        state="delivered",
    )
    mine = HistoryItem(
        peer=bob,
        pos=4,
        id=b"\x02" * 16,
        sender=account.account_key,
        device=first.public_key,
        out=True,
        ts=NOW - 800,
        rx=NOW - 800,
        type="p2pchat/text",
        body=body,
        state="sent",
    )
    chunk0 = box.seal(0, HistoryChunkContent(items=(item,), left=1), rng=_Seeded("hbox-0"))
    chunk1 = box.seal(1, HistoryChunkContent(items=(mine,), left=0), rng=_Seeded("hbox-1"))
    common = {
        "existing": first.public_key.hex(),
        "remote": new_key.hex(),
        "new_seed": new_seed.hex(),
        "nonce": nonce.hex(),
    }
    other_sync = HistoryBox(
        existing=first.public_key,
        new=new_key,
        own_seed=first.signing_seed(),
        nonce=b"\x00" * 16,
    ).seal(0, HistoryChunkContent(items=(item,), left=0), rng=_Seeded("hbox-x"))
    valid = [
        {
            "name": "history request (resuming)",
            "check": "history-message",
            "rule": "history-request",
            "hex": request.to_bytes().hex(),
        },
        {
            "name": "history deny",
            "check": "history-message",
            "rule": "history-deny",
            "hex": HistoryDeny(t="hdeny", v=1, why="refused").to_bytes().hex(),
        },
        {
            "name": "history chunk 0",
            "check": "history-chunk",
            "rule": "history-chunk",
            "hex": chunk0.hex(),
            "index": 0,
            **common,
        },
        {
            "name": "history chunk 1 (the last)",
            "check": "history-chunk",
            "rule": "history-chunk",
            "hex": chunk1.hex(),
            "index": 1,
            **common,
        },
    ]
    invalid = [
        {
            "name": "history chunk: sealed for another request",
            "check": "history-chunk",
            "hex": other_sync.hex(),
            "index": 0,
            **common,
            "reason": "bad-box",
        },
        {
            "name": "history chunk: out of order",
            "check": "history-chunk",
            "hex": chunk1.hex(),
            "index": 0,
            **common,
            "reason": "unexpected",
        },
        {
            "name": "history chunk: index moved (associated data)",
            "check": "history-chunk",
            "hex": cbor.encode({**cbor.decode(chunk1, max_size=1 << 20), "n": 0}).hex(),
            "index": 0,
            **common,
            "reason": "bad-box",
        },
        {
            "name": "history request: max 0",
            "check": "history-message",
            "hex": cbor.encode({**request.to_value(), "max": 0}).hex(),
            "reason": "out-of-range",
        },
        {
            "name": "history message: unknown kind",
            "check": "history-message",
            "hex": cbor.encode({"t": "hmore", "v": 1}).hex(),
            "reason": "unknown-kind",
        },
    ]
    return valid, invalid


def _dump(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def generate() -> dict[str, str]:
    valid, invalid = _vectors()
    for vector in valid:
        vector["yields"] = run_check(vector)
    for vector in invalid:
        try:
            run_check(vector)
        except WireError as exc:
            if exc.reason != vector["reason"]:
                raise AssertionError(f"{vector['name']}: got {exc.reason}") from exc
        else:
            raise AssertionError(f"invalid vector accepted: {vector['name']}")
    return {
        "devices/valid.json": _dump({"now": NOW, "vectors": valid}),
        "devices/invalid.json": _dump({"now": NOW, "vectors": invalid}),
    }


if __name__ == "__main__":
    for rel, text in generate().items():
        (HERE / rel).parent.mkdir(parents=True, exist_ok=True)
        (HERE / rel).write_text(text)
        print(f"wrote protocol-spec/vectors/{rel}")

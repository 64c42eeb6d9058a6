"""The per-RPC cost cuts of p2pchat/net/_pubsub_costs.py, on py-libp2p's real records."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStore, create_signed_peer_record
from libp2p.pubsub.pb.rpc_pb2 import RPC
from multiaddr import Multiaddr

from p2pchat.net import _pubsub_costs


class _Host:
    def __init__(self) -> None:
        self.peerstore = PeerStore()

    def get_peerstore(self) -> PeerStore:
        return self.peerstore


def _record(seed: bytes, port: int) -> tuple[ID, bytes]:
    pair = create_new_key_pair(seed)
    peer = ID.from_pubkey(pair.public_key)
    envelope = create_signed_peer_record(
        peer, [Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")], pair.private_key
    )
    return peer, envelope.marshal_envelope()


def _rpc(record: bytes) -> RPC:
    rpc = RPC()
    rpc.senderRecord = record
    return rpc


@pytest.fixture
def full_checks(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The records that took py-libp2p's full path (decode, signature, peerstore)."""
    calls: list[bytes] = []
    original: Callable[..., bool] = _pubsub_costs._consume

    def counted(msg: RPC, host: Any, peer_id: ID) -> bool:
        calls.append(bytes(msg.senderRecord))
        return original(msg, host, peer_id)

    monkeypatch.setattr(_pubsub_costs, "_consume", counted)
    return calls


def test_a_peers_record_is_checked_once_then_taken_as_is(full_checks: list[bytes]) -> None:
    host = _Host()
    peer, record = _record(b"a" * 32, 4001)
    for _ in range(5):
        assert _pubsub_costs.maybe_consume_signed_record(_rpc(record), host, peer)  # type: ignore[arg-type]
    assert full_checks == [record]
    assert host.peerstore.get_peer_record(peer) is not None
    # A new record (new addresses) is checked again.
    _, newer = _record(b"a" * 32, 4002)
    assert _pubsub_costs.maybe_consume_signed_record(_rpc(newer), host, peer)  # type: ignore[arg-type]
    assert full_checks == [record, newer]


def test_forged_or_foreign_records_are_refused_every_time(full_checks: list[bytes]) -> None:
    host = _Host()
    peer, record = _record(b"b" * 32, 4001)
    forged = record[:-1] + bytes([record[-1] ^ 1])  # the signature's last byte
    other_peer, _ = _record(b"c" * 32, 4003)
    for _ in range(3):
        assert not _pubsub_costs.maybe_consume_signed_record(_rpc(forged), host, peer)  # type: ignore[arg-type]
        # A valid record, sent by someone else than the peer it names.
        assert not _pubsub_costs.maybe_consume_signed_record(_rpc(record), host, other_peer)  # type: ignore[arg-type]
    assert len(full_checks) == 6
    # A refused record does not poison the cache for the real one.
    assert _pubsub_costs.maybe_consume_signed_record(_rpc(record), host, peer)  # type: ignore[arg-type]


def test_an_rpc_without_a_record_passes() -> None:
    peer, _ = _record(b"d" * 32, 4001)
    assert _pubsub_costs.maybe_consume_signed_record(RPC(), _Host(), peer)  # type: ignore[arg-type]


def test_install_routes_py_libp2p_pubsub_through_the_cache() -> None:
    import libp2p.pubsub.gossipsub
    import libp2p.pubsub.pubsub
    from libp2p.stream_muxer.yamux.yamux import YamuxStream

    _pubsub_costs.install()
    _pubsub_costs.install()  # idempotent
    for module in (libp2p.pubsub.pubsub, libp2p.pubsub.gossipsub):
        assert module.maybe_consume_signed_record is _pubsub_costs.maybe_consume_signed_record
        assert module.env_to_send_in_RPC is _pubsub_costs.env_to_send_in_RPC
    assert YamuxStream._auto_tune_and_send_window_update is _pubsub_costs._window_update

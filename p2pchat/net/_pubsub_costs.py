"""Per-RPC costs py-libp2p 0.8.1 adds to every pubsub message, cut in our adapter.

Measured with ``bench/scale_bench.py --py-spy`` on a receiving node of a 20-process group
(docs/networking.md, "Per-message costs", has the upstream-ready descriptions):

* **Signed peer records re-verified on every RPC.** Every gossipsub RPC carries the
  sender's signed peer record (``senderRecord``); ``maybe_consume_signed_record`` decodes
  it, checks its Ed25519 signature and rewrites the peer's certified addresses (clear,
  then add) each time, twice for an RPC with control messages. A record changes only when
  the peer's addresses do. :func:`maybe_consume_signed_record` here remembers, per
  peerstore and peer, the record bytes last accepted: the same bytes again within
  :data:`RECORD_RECHECK_S` are accepted without decoding; other bytes (a new record, or
  anything forged) take py-libp2p's full path, and so does the first copy after that
  time (which renews the addresses' TTL as before).
* **Our own record rebuilt for every RPC sent.** ``env_to_send_in_RPC`` asks the host for
  its addresses (our address filter, interface list, multiaddr hashing) and compares them
  with the cached record's on every RPC. :func:`env_to_send_in_RPC` here reuses the
  answer for :data:`OWN_RECORD_REUSE_S`.
* **A Yamux window update after every read.** ``YamuxStream.read`` credits the bytes it
  just read back to the sender at once (a WINDOW_UPDATE frame, so a Noise encryption and
  a socket write, for each read, and the pubsub reader reads a varint and then its
  message). :func:`_window_update` is go-yamux's rule: credit the consumed bytes once
  they reach half the window (the sender may have the other half in flight), with
  py-libp2p's receive-window auto-tuning kept.

Installed once per process (idempotent) by :func:`p2pchat.net.pubsub.start_pubsub`.
"""

from __future__ import annotations

import time
import weakref
from collections import OrderedDict
from typing import Any

import libp2p.pubsub.floodsub
import libp2p.pubsub.gossipsub
import libp2p.pubsub.pubsub
import libp2p.pubsub.utils
from libp2p.abc import IHost
from libp2p.peer import peerstore
from libp2p.peer.id import ID
from libp2p.pubsub.pb.rpc_pb2 import RPC
from libp2p.stream_muxer.yamux.yamux import YamuxStream

__all__ = [
    "OWN_RECORD_REUSE_S",
    "RECORD_RECHECK_S",
    "env_to_send_in_RPC",
    "install",
    "maybe_consume_signed_record",
]

#: A peer record seen again is taken without a check for this long (then checked again,
#: which also renews its addresses' TTL of 2 hours, as py-libp2p does on every RPC).
RECORD_RECHECK_S = 600.0
#: Our own signed record (and the addresses it lists) is reused for this long.
OWN_RECORD_REUSE_S = 1.0
#: Peers remembered per peerstore (least recently accepted forgotten first).
_PEERS = 4096

#: The modules that imported py-libp2p's functions by name (each holds its own binding).
_PUBSUB_MODULES = (libp2p.pubsub.pubsub, libp2p.pubsub.gossipsub, libp2p.pubsub.floodsub)
_consume = libp2p.pubsub.utils.maybe_consume_signed_record
_own_record = peerstore.env_to_send_in_RPC
#: peerstore -> peer -> (record bytes, monotonic time accepted).
_accepted: weakref.WeakKeyDictionary[Any, OrderedDict[ID, tuple[bytes, float]]] = (
    weakref.WeakKeyDictionary()
)
#: host -> (our record bytes, monotonic time built).
_own: weakref.WeakKeyDictionary[Any, tuple[bytes, float]] = weakref.WeakKeyDictionary()


def maybe_consume_signed_record(msg: RPC, host: IHost, peer_id: ID) -> bool:
    """py-libp2p's function of that name, checking each distinct record once."""
    if not msg.HasField("senderRecord"):
        return True
    record = msg.senderRecord
    peers = _accepted.setdefault(host.get_peerstore(), OrderedDict())
    now = time.monotonic()
    known = peers.get(peer_id)
    if known is not None and known[0] == record and now - known[1] < RECORD_RECHECK_S:
        return True
    ok = _consume(msg, host, peer_id)
    if ok:
        peers[peer_id] = (record, now)
        peers.move_to_end(peer_id)
        if len(peers) > _PEERS:
            peers.popitem(last=False)
    else:
        peers.pop(peer_id, None)
    return ok


def env_to_send_in_RPC(host: IHost) -> tuple[bytes, bool]:
    """py-libp2p's function of that name, reusing its answer for a second."""
    now = time.monotonic()
    cached = _own.get(host)
    if cached is not None and now - cached[1] < OWN_RECORD_REUSE_S:
        return cached[0], False
    envelope, created = _own_record(host)
    _own[host] = (envelope, now)
    return envelope, created


async def _window_update(self: YamuxStream, *, bytes_read: int = 0) -> None:
    """Credit consumed bytes to the sender once they reach half the receive window."""
    total = 0
    async with self.window_lock:
        buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
        consumed = self.target_recv_window - (self.recv_window + buffered)
        if consumed >= self._grow_threshold():
            total = self._grow_to_delta(buffered)
            total += self._apply_autotune_epoch(buffered)
            self._pending_recv_release = 0
    if total > 0:
        await self.send_window_update(total, skip_lock=True)


def install() -> None:
    """Route py-libp2p through the functions above (idempotent, process-wide)."""
    for module in _PUBSUB_MODULES:
        module.maybe_consume_signed_record = maybe_consume_signed_record  # type: ignore[attr-defined]
        module.env_to_send_in_RPC = env_to_send_in_RPC  # type: ignore[attr-defined]
    YamuxStream._auto_tune_and_send_window_update = _window_update  # type: ignore[method-assign]

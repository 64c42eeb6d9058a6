"""Peer penalties on real hosts (127.0.0.1): a peer whose stream frames are invalid is
disconnected after repeated offences, refused and not redialled; rejections are counted
by reason (issue 12)."""

from __future__ import annotations

import pytest
import trio

from p2pchat.errors import NetworkError, PeerUnreachableError, WireError
from p2pchat.net.base import FramedStream

from .test_net_libp2p import PROTO, hosts, wait_for

pytestmark = pytest.mark.integration


async def strict(stream: FramedStream) -> None:
    """Accepts only frames that say b"ok"."""
    while (frame := await stream.read_frame(4096)) is not None:
        if frame != b"ok":
            raise WireError("bad-test-frame", "not ok")
        await stream.write_frame(frame)


async def test_a_peer_sending_invalid_frames_is_graylisted_and_not_redialled() -> None:
    with trio.fail_after(30):
        async with hosts(3) as (good, bad, server):
            server.set_stream_handler(PROTO, strict)
            for peer in (good, bad):
                await peer.connect(server.peer_id, server.listen_addrs)
            stream = await good.open_stream(server.peer_id, PROTO)
            await stream.write_frame(b"ok")
            assert await stream.read_frame(16) == b"ok"
            sent = 0
            while server.statistics()["graylisted"] == 0:  # an invalid frame per stream
                assert sent < 15
                stream = await bad.open_stream(server.peer_id, PROTO)
                await stream.write_frame(b"garbage")
                assert await _ended(stream)
                sent += 1
            stats = server.statistics()
            assert 10 <= sent <= 11  # the threshold (scores decay, slowly)
            assert stats["penalties"] == {"bad-test-frame": sent}
            await wait_for(lambda: bad.peer_id not in server.connected_peers())
            assert good.peer_id in server.connected_peers()
            with pytest.raises(PeerUnreachableError, match="graylisted"):
                await server.connect(bad.peer_id, bad.listen_addrs)
            # It cannot come back by dialling us either: its streams are refused.
            await bad.connect(server.peer_id, server.listen_addrs)
            try:
                stream = await bad.open_stream(server.peer_id, PROTO)
                await stream.write_frame(b"ok")
                refused = await _ended(stream)
            except NetworkError:  # reset while the protocol was negotiated
                refused = True
            assert refused


async def _ended(stream: FramedStream) -> bool:
    try:
        return await stream.read_frame(16) is None
    except Exception:
        return True

"""Stream read deadlines on real hosts (127.0.0.1), the same for every protocol: a peer
trickling bytes, or saying nothing, is cut off; a normal peer is not (issue 12)."""

from __future__ import annotations

import pytest
import trio
from libp2p.custom_types import TProtocol

from p2pchat.errors import WireError
from p2pchat.net.base import FramedStream
from p2pchat.protocol.framing import encode_frame

from .test_net_libp2p import PROTO, hosts

pytestmark = pytest.mark.integration


class Recorder:
    """A handler that echoes frames and remembers how its stream ended."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.ended: list[str] = []
        self.done = trio.Event()

    async def handle(self, stream: FramedStream) -> None:
        try:
            while (frame := await stream.read_frame(4096)) is not None:
                self.frames.append(frame)
                await stream.write_frame(frame)
            self.ended.append("eof")
        except WireError as exc:
            self.ended.append(exc.reason)
            raise
        finally:
            self.done.set()


async def test_a_peer_sending_one_byte_at_a_time_is_cut_off() -> None:
    with trio.fail_after(20):
        async with hosts(2, stream_frame_timeout=1.0, stream_idle_timeout=2.0) as (a, b):
            recorder = Recorder()
            b.set_stream_handler(PROTO, recorder.handle)
            await a.connect(b.peer_id, b.listen_addrs)
            raw = await a.host.new_stream(b.host.get_id(), [TProtocol(PROTO)])
            frame = encode_frame(b"x" * 20)
            started = trio.current_time()
            with trio.move_on_after(10):
                for byte in frame:  # a byte every 0.25 s: the frame would take 5 s
                    if recorder.done.is_set():
                        break
                    try:
                        await raw.write(bytes([byte]))
                    except Exception:  # the server reset the stream
                        break
                    await trio.sleep(0.25)
            await recorder.done.wait()
            assert recorder.ended == ["read-timeout"]
            assert recorder.frames == []
            assert trio.current_time() - started < 3


async def test_a_peer_that_opens_a_stream_and_says_nothing_is_cut_off() -> None:
    with trio.fail_after(20):
        async with hosts(2, stream_frame_timeout=1.0, stream_idle_timeout=2.0) as (a, b):
            recorder = Recorder()
            b.set_stream_handler(PROTO, recorder.handle)
            await a.connect(b.peer_id, b.listen_addrs)
            stream = await a.open_stream(b.peer_id, PROTO)
            await stream.write_frame(b"hello")
            assert await stream.read_frame(4096) == b"hello"
            await recorder.done.wait()  # then nothing: the idle deadline
            assert recorder.ended == ["read-timeout"]


async def test_a_normal_peer_pausing_between_frames_is_served() -> None:
    with trio.fail_after(20):
        async with hosts(2, stream_frame_timeout=1.0, stream_idle_timeout=2.0) as (a, b):
            recorder = Recorder()
            b.set_stream_handler(PROTO, recorder.handle)
            await a.connect(b.peer_id, b.listen_addrs)
            stream = await a.open_stream(b.peer_id, PROTO)
            for i in range(4):  # 4 s in all, longer than either deadline
                await stream.write_frame(b"frame %d" % i + b"." * 2000)
                echoed = await stream.read_frame(4096)
                assert echoed is not None
                assert echoed.startswith(b"frame %d" % i)
                await trio.sleep(1.0)  # a pause below the idle deadline
            await stream.close()
            await recorder.done.wait()
            assert recorder.ended == ["eof"]
            assert len(recorder.frames) == 4

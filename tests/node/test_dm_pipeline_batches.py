"""``FrameBatches``: a receiver's batch is every frame read so far, in order, capped;
a reading error comes only after the frames before it."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing

from p2pchat.dm.streams import FrameBatches
from p2pchat.errors import P2PChatError, WireError


class ScriptedStream:
    """A FramedStream whose reads return scripted frames, then an end or an error."""

    def __init__(self, frames: list[bytes], *, error: P2PChatError | None = None) -> None:
        self._frames = list(frames)
        self._error = error

    @property
    def remote_peer(self) -> str:
        return "peer"

    @property
    def protocol(self) -> str:
        return "/p2pchat/dm/1.0.0"

    async def read_frame(self, max_size: int) -> bytes | None:
        await trio.lowlevel.checkpoint()
        if self._frames:
            return self._frames.pop(0)
        if self._error is not None:
            raise self._error
        return None

    async def write_frame(self, data: bytes) -> None:
        raise AssertionError("not written in these tests")

    async def write_frames(self, frames: Sequence[bytes]) -> None:
        raise AssertionError("not written in these tests")

    async def close(self) -> None:
        pass

    async def reset(self) -> None:
        pass


async def collect(stream: ScriptedStream, *, max_batch: int) -> list[list[bytes]]:
    batches = FrameBatches(stream, max_size=1024, max_batch=max_batch)
    found: list[list[bytes]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batches.run)
        while True:
            await trio.testing.wait_all_tasks_blocked()  # the reader read all it may
            batch = await batches.next()
            if not batch:
                return found
            found.append(batch)


async def test_frames_already_read_come_as_one_batch_capped() -> None:
    frames = [bytes([i]) for i in range(10)]
    batches = await collect(ScriptedStream(frames), max_batch=4)
    assert batches == [frames[0:4], frames[4:8], frames[8:10]]


async def test_a_lone_frame_is_a_batch_of_one() -> None:
    assert await collect(ScriptedStream([b"a"]), max_batch=64) == [[b"a"]]


async def test_a_reading_error_comes_after_the_frames_before_it() -> None:
    stream = ScriptedStream([b"a", b"b"], error=WireError("truncated-frame", "cut"))
    batches = FrameBatches(stream, max_size=1024, max_batch=64)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batches.run)
        await trio.testing.wait_all_tasks_blocked()
        assert await batches.next() == [b"a", b"b"]
        with pytest.raises(WireError):
            await batches.next()


def test_the_cap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        FrameBatches(ScriptedStream([]), max_size=1024, max_batch=0)

"""The pieces both adapters share: framing over a byte stream, retries, error mapping,
configuration and peer ids."""

from __future__ import annotations

import itertools
import random

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from trio.testing import MockClock

from p2pchat.errors import (
    ClosedError,
    ConfigError,
    NetworkError,
    PeerUnreachableError,
    WireError,
)
from p2pchat.net._errors import map_exceptions
from p2pchat.net._framed import FramedByteStream
from p2pchat.net.config import GossipConfig, NetConfig, RetryConfig
from p2pchat.net.identity import public_key_to_peer_id, seed_to_peer_id
from p2pchat.net.retry import RetryCounters, backoff_delay, retry
from p2pchat.protocol.framing import encode_frame


class ScriptedBytes:
    """A ByteStream that yields preset chunks, then EOF, and records what is sent."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.sent: list[bytes] = []
        self.closed = False
        self.was_reset = False

    async def receive_some(self, max_bytes: int) -> bytes:
        await trio.lowlevel.checkpoint()
        return self.chunks.pop(0) if self.chunks else b""

    async def send_all(self, data: bytes) -> None:
        self.sent.append(data)

    async def close_write(self) -> None:
        self.closed = True

    async def reset(self) -> None:
        self.was_reset = True


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


@given(
    frames=st.lists(st.binary(max_size=300), max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=12),
)
def test_frames_survive_any_chunking(frames: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(encode_frame(f) for f in frames)

    async def run() -> list[bytes]:
        stream = FramedByteStream(ScriptedBytes(_split(wire, cuts)), remote_peer="p", protocol="x")
        out = []
        while (frame := await stream.read_frame(300)) is not None:
            out.append(frame)
        return out

    assert trio.run(run) == frames


async def test_truncated_frame_and_bad_prefix_are_wire_errors() -> None:
    truncated = FramedByteStream(
        ScriptedBytes([encode_frame(b"abcdef")[:-1]]), remote_peer="p", protocol="x"
    )
    with pytest.raises(WireError) as info:
        await truncated.read_frame(100)
    assert info.value.reason == "truncated-frame"
    non_minimal = FramedByteStream(ScriptedBytes([b"\x81\x00"]), remote_peer="p", protocol="x")
    with pytest.raises(WireError) as info:
        await non_minimal.read_frame(100)
    assert info.value.reason == "bad-varint"


async def test_close_is_half_close_and_reset_is_final() -> None:
    raw = ScriptedBytes([encode_frame(b"answer")])
    stream = FramedByteStream(raw, remote_peer="p", protocol="x")
    await stream.write_frame(b"question")
    await stream.close()
    await stream.close()
    assert raw.sent == [encode_frame(b"question")]
    assert raw.closed
    assert await stream.read_frame(100) == b"answer"
    with pytest.raises(ClosedError):
        await stream.write_frame(b"more")
    await stream.reset()
    assert raw.was_reset
    with pytest.raises(ClosedError):
        await stream.read_frame(100)
    with pytest.raises(WireError):
        await FramedByteStream(raw, remote_peer="p", protocol="x").write_frame(b"x" * (1 << 21))


def test_map_exceptions_maps_first_match_and_keeps_cause() -> None:
    table = [(ConnectionRefusedError, PeerUnreachableError), (OSError, NetworkError)]
    with pytest.raises(PeerUnreachableError) as info, map_exceptions(table, what="dial"):
        raise ConnectionRefusedError("secret-looking detail 0xdeadbeef")
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert "deadbeef" not in str(info.value)
    assert str(info.value) == "dial failed (ConnectionRefusedError)"
    with pytest.raises(NetworkError), map_exceptions(table, what="read"):
        raise TimeoutError
    with pytest.raises(KeyError), map_exceptions(table, what="other"):
        raise KeyError("not listed: a bug, not a network error")
    with pytest.raises(ClosedError), map_exceptions([(Exception, NetworkError)], what="ours"):
        raise ClosedError("ours pass through")


async def test_retry_backs_off_with_seeded_jitter(autojump_clock: MockClock) -> None:
    policy = RetryConfig(attempt_timeout=5, attempts=4, base_delay=1.0, max_delay=3.0)
    calls: list[float] = []

    async def flaky() -> str:
        calls.append(trio.current_time())
        if len(calls) < 3:
            raise NetworkError("stream open failed")
        return "ok"

    assert await retry(flaky, policy=policy, jitter=random.Random(5), what="lookup") == "ok"
    expected = random.Random(5)
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert gaps == pytest.approx(
        [
            backoff_delay(0, policy=policy, jitter=expected),
            backoff_delay(1, policy=policy, jitter=expected),
        ]
    )


async def test_retry_gives_up_after_timeouts_and_passes_bugs_through(
    autojump_clock: MockClock,
) -> None:
    policy = RetryConfig(attempt_timeout=2, attempts=3, base_delay=0.1)
    attempts = 0

    async def hangs() -> None:
        nonlocal attempts
        attempts += 1
        await trio.sleep_forever()

    counters = RetryCounters()
    with pytest.raises(NetworkError, match="after 3 attempts") as info:
        await retry(hangs, policy=policy, jitter=random.Random(1), what="lookup", counters=counters)
    assert attempts == 3
    assert (counters.attempts, counters.failed_attempts, counters.gave_up) == (3, 3, 1)
    assert isinstance(info.value.__cause__, trio.TooSlowError)

    async def buggy() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        await retry(buggy, policy=policy, jitter=random.Random(1), what="lookup")


def test_backoff_is_bounded() -> None:
    policy = RetryConfig(base_delay=0.5, max_delay=2.0)
    jitter = random.Random(0)
    delays = [backoff_delay(n, policy=policy, jitter=jitter) for n in range(20)]
    assert all(0 <= d <= 2.0 for d in delays)
    assert max(delays) > 1.0


@pytest.mark.parametrize(
    "make",
    [
        lambda: NetConfig(port=70000),
        lambda: NetConfig(listen_hosts=()),
        lambda: NetConfig(dht_mode="peer"),  # type: ignore[arg-type]
        lambda: NetConfig(dial_timeout=0),
        lambda: NetConfig(bootstrap=("/ip4/127.0.0.1/tcp/4242",)),
        lambda: GossipConfig(degree=3, degree_low=4),
        lambda: GossipConfig(heartbeat_interval=0),
        lambda: RetryConfig(attempts=0),
    ],
)
def test_bad_configuration_is_refused(make: object) -> None:
    with pytest.raises(ConfigError):
        make()  # type: ignore[operator]


def test_config_defaults_and_listen_addrs() -> None:
    config = NetConfig()
    assert config.port == 4242
    assert config.listen_addrs == ["/ip4/0.0.0.0/tcp/4242"]
    assert config.gossip.heartbeat_interval == 1.0
    assert (config.gossip.degree_low, config.gossip.degree, config.gossip.degree_high) == (4, 6, 12)
    both = NetConfig(listen_hosts=("127.0.0.1", "::1"), port=0)
    assert both.listen_addrs == ["/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0"]


def test_peer_id_shape_and_input_checks() -> None:
    peer = seed_to_peer_id(b"\x01" * 32)
    assert peer.startswith("12D3KooW")
    assert peer == seed_to_peer_id(b"\x01" * 32) != seed_to_peer_id(b"\x02" * 32)
    with pytest.raises(ValueError, match="32 bytes"):
        seed_to_peer_id(b"short")
    with pytest.raises(ValueError, match="32 bytes"):
        public_key_to_peer_id(b"\x00" * 31)


def test_wildcard_listeners_are_shown_as_dialable_addresses() -> None:
    from p2pchat.net._addrs import expand_wildcards

    listen = ["/ip4/0.0.0.0/tcp/4242", "/ip6/::/tcp/4242", "/ip4/10.1.2.3/tcp/9"]
    ips = ["127.0.0.1", "192.168.1.5", "192.168.1.5"]
    assert expand_wildcards(listen, ips, loopback=True) == [
        "/ip4/127.0.0.1/tcp/4242",
        "/ip4/192.168.1.5/tcp/4242",
        "/ip4/10.1.2.3/tcp/9",
    ]
    assert expand_wildcards(listen, ips, loopback=False) == [
        "/ip4/192.168.1.5/tcp/4242",
        "/ip4/10.1.2.3/tcp/9",
    ]


@given(frames=st.lists(st.binary(max_size=300), max_size=6))
def test_write_frames_sends_the_bytes_of_one_write_frame_each_in_one_write(
    frames: list[bytes],
) -> None:
    async def main() -> tuple[list[bytes], list[bytes]]:
        one, many = ScriptedBytes([]), ScriptedBytes([])
        for frame in frames:
            await FramedByteStream(one, remote_peer="p", protocol="x").write_frame(frame)
        await FramedByteStream(many, remote_peer="p", protocol="x").write_frames(frames)
        return one.sent, many.sent

    one, many = trio.run(main)
    assert len(many) == (1 if frames else 0)
    assert b"".join(many) == b"".join(one)


async def test_write_frames_after_close_is_refused() -> None:
    stream = FramedByteStream(ScriptedBytes([]), remote_peer="p", protocol="x")
    await stream.close()
    with pytest.raises(ClosedError):
        await stream.write_frames([b"x"])

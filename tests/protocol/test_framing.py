from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchat.errors import WireError
from p2pchat.protocol.framing import (
    FrameDecoder,
    decode_varint,
    encode_frame,
    encode_varint,
)


@given(st.integers(min_value=0, max_value=(1 << 63) - 1))
def test_varint_round_trip(value: int) -> None:
    data = encode_varint(value)
    assert decode_varint(data) == (value, len(data))
    assert decode_varint(data[:-1]) is None


def test_varint_known_values() -> None:
    assert encode_varint(0) == b"\x00"
    assert encode_varint(127) == b"\x7f"
    assert encode_varint(128) == b"\x80\x01"
    assert encode_varint(300) == b"\xac\x02"


def test_non_minimal_and_overlong_varints_are_rejected() -> None:
    with pytest.raises(WireError) as info:
        decode_varint(b"\x81\x00")
    assert info.value.reason == "bad-varint"
    with pytest.raises(WireError):
        decode_varint(b"\xff" * 9 + b"\x01")


@given(st.lists(st.binary(max_size=300), max_size=8), st.integers(min_value=1, max_value=50))
def test_frames_survive_any_split(payloads: list[bytes], chunk: int) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    decoder = FrameDecoder(max_frame=1000)
    out: list[bytes] = []
    for i in range(0, len(stream), chunk):
        decoder.feed(stream[i : i + chunk])
        out.extend(decoder.frames())
    assert out == payloads
    assert decoder.at_boundary


def test_oversized_frame_is_refused_from_its_prefix_alone() -> None:
    decoder = FrameDecoder(max_frame=100)
    decoder.feed(encode_varint(101))  # no body at all yet
    with pytest.raises(WireError) as info:
        decoder.next_frame()
    assert info.value.reason == "frame-too-large"
    with pytest.raises(WireError):
        encode_frame(b"x" * 101, max_frame=100)


def test_bytes_needed_reports_the_missing_body() -> None:
    decoder = FrameDecoder()
    assert decoder.bytes_needed() == 1
    decoder.feed(encode_frame(b"hello")[:3])
    assert decoder.bytes_needed() == 3

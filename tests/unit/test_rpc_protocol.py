"""The sans-IO RPC codec: strict msgpack in, typed messages out, typed errors for the rest."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchat.errors import LocalProtocolError, WireError
from p2pchat.rpc.protocol import (
    Close,
    DecodeLimits,
    ErrorInfo,
    ErrorResponse,
    EventMessage,
    Request,
    Response,
    encode_event_body,
    encode_event_frame,
    encode_message,
    parse_request,
    parse_server_message,
    unpack_payload,
)


def _pack(obj: Any) -> bytes:
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed


def _reason(payload: bytes, **kw: Any) -> str:
    with pytest.raises(WireError) as info:
        unpack_payload(payload, **kw)
    return info.value.reason


def test_request_round_trip() -> None:
    req = Request(7, "dm.send", {"to": "bob", "text": "hi", "raw": b"\x00"})
    assert parse_request(unpack_payload(encode_message(req))) == req


@pytest.mark.parametrize(
    "msg",
    [
        Response(1, {"a": [1, 2, None, True, 1.5, b"x"]}),
        ErrorResponse(2, ErrorInfo(1001, "not-found", "no contact", {"k": 1})),
        ErrorResponse(None, ErrorInfo(-32700, "parse-error", "bad")),
        EventMessage(3, 99, {"type": "dm.received", "text": "yo"}),
        Close(ErrorInfo(1103, "slow-consumer", "too slow")),
    ],
)
def test_server_messages_round_trip(msg: Any) -> None:
    assert parse_server_message(unpack_payload(encode_message(msg))) == msg


def test_event_frame_splice_equals_full_encoding() -> None:
    event = {"type": "x", "nested": {"list": [1, "two", b"3"]}}
    spliced = encode_event_frame(5, 1 << 40, encode_event_body(event))
    assert spliced == encode_message(EventMessage(5, 1 << 40, event))


def test_trailing_bytes_rejected() -> None:
    assert _reason(_pack({"type": "request"}) + b"\x00") == "trailing-bytes"


def test_ext_types_and_timestamps_rejected() -> None:
    assert _reason(_pack({"a": msgpack.ExtType(5, b"abc")})) == "ext-type"
    assert _reason(_pack({"a": msgpack.Timestamp(1, 0)})) == "ext-type"


def test_duplicate_and_non_string_keys_rejected() -> None:
    # fixmap of 2 entries, both with key "a"
    assert _reason(b"\x82\xa1a\x01\xa1a\x02") == "duplicate-key"
    assert _reason(_pack({b"a": 1})) == "bad-key"
    assert _reason(_pack({1: 1})) == "bad-msgpack"  # strict_map_key refuses ints


def test_not_a_map_truncated_and_garbage() -> None:
    assert _reason(_pack([1, 2])) == "not-a-map"
    assert _reason(_pack({"a": "bcd"})[:-1]) == "bad-msgpack"
    assert _reason(b"\xc1") == "bad-msgpack"
    assert _reason(b"") == "bad-msgpack"
    assert _reason(b"\x81\xa1a\xa2\xff\xfe") == "bad-msgpack"  # invalid UTF-8 in a str


def test_oversized_containers_and_depth() -> None:
    limits = DecodeLimits(max_str_len=4, max_array_len=3, max_map_len=3, max_depth=3)
    assert _reason(_pack({"a": "12345"}), limits=limits) == "bad-msgpack"
    assert _reason(_pack({"a": [1, 2, 3, 4]}), limits=limits) == "bad-msgpack"
    assert _reason(_pack({"a": [[[[1]]]]}), limits=limits) == "too-deep"
    assert unpack_payload(_pack({"a": [[1]]}), limits=limits) == {"a": [[1]]}  # at the limit


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"id": 1, "method": "m", "params": {}}, "missing-field"),
        ({"type": "response", "id": 1}, "bad-type-tag"),
        ({"type": "request", "id": "1", "method": "m"}, "bad-field"),
        ({"type": "request", "id": True, "method": "m"}, "bad-field"),
        ({"type": "request", "id": -1, "method": "m"}, "bad-field"),
        ({"type": "request", "id": 1 << 53, "method": "m"}, "bad-field"),
        ({"type": "request", "id": 1, "method": ""}, "bad-field"),
        ({"type": "request", "id": 1, "method": "m", "params": []}, "bad-field"),
        ({"type": "request", "id": 1, "method": "m", "extra": 1}, "unknown-field"),
    ],
)
def test_request_field_validation(obj: dict[str, Any], reason: str) -> None:
    with pytest.raises(WireError) as info:
        parse_request(obj)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"type": "hello"}, "bad-type-tag"),
        ({"type": "response", "id": 1}, "missing-field"),
        ({"type": "response", "id": 1, "error": {"code": 1, "name": "x"}}, "missing-field"),
        ({"type": "response", "id": 1, "error": "boom"}, "bad-field"),
        ({"type": "event", "sub": 1, "cursor": 1, "event": [1]}, "bad-field"),
        (
            {"type": "close", "error": {"code": 1, "name": "n", "message": "m", "x": 1}},
            "unknown-field",
        ),
    ],
)
def test_server_message_validation(obj: dict[str, Any], reason: str) -> None:
    with pytest.raises(WireError) as info:
        parse_server_message(obj)
    assert info.value.reason == reason


def test_unencodable_values_are_local_errors() -> None:
    with pytest.raises(LocalProtocolError):
        encode_message(Response(1, object()))
    with pytest.raises(LocalProtocolError):
        encode_message(Response(1, 1 << 70))
    with pytest.raises(LocalProtocolError):
        encode_event_body({"type": "x", "bad": {1, 2}})


def test_request_repr_hides_params() -> None:
    req = Request(0, "rpc.hello", {"token": "p2pc_SECRETSECRET"})
    assert "SECRET" not in repr(req)


_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(
    st.integers(0, (1 << 53) - 1),
    st.text(min_size=1, max_size=128),
    st.dictionaries(st.text(), _values, max_size=5),
)
def test_any_valid_request_round_trips(
    request_id: int, method: str, params: dict[str, Any]
) -> None:
    req = Request(request_id, method, params)
    assert parse_request(unpack_payload(encode_message(req))) == req

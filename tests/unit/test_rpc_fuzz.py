"""Fuzz: 50,000+ mutated RPC frames through the decoder; only WireError may come out."""

from __future__ import annotations

import random

import msgpack

from p2pchat.errors import WireError
from p2pchat.protocol.framing import FrameDecoder, encode_frame
from p2pchat.rpc.protocol import (
    Close,
    ErrorInfo,
    ErrorResponse,
    EventMessage,
    Message,
    Request,
    Response,
    encode_message,
    parse_request,
    parse_server_message,
    unpack_payload,
)

SEEDS: list[Message] = [
    Request(1, "dm.send", {"to": "bob", "text": "hello", "n": [1, 2, {"x": b"\x00"}]}),
    Request(0, "rpc.hello", {"versions": [1, 1], "token": "p2pc_abc", "client": "cli"}),
    Response(9, {"ok": True, "list": [None, 1.5, -3, "s"]}),
    ErrorResponse(3, ErrorInfo(1001, "not-found", "no such contact", {"id": 4})),
    EventMessage(2, 77, {"type": "dm.received", "from": "alice", "body": b"\xff" * 10}),
    Close(ErrorInfo(1103, "slow-consumer", "overflow")),
]
INTERESTING = [0x00, 0x7F, 0x80, 0xC0, 0xC1, 0xC4, 0xC7, 0xD4, 0xDC, 0xDD, 0xDE, 0xDF, 0xFF]


def _mutate(rnd: random.Random, data: bytearray) -> bytes:
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(6)
        pos = rnd.randrange(len(data)) if data else 0
        if op == 0 and data:
            data[pos] ^= 1 << rnd.randrange(8)
        elif op == 1 and data:
            data[pos] = rnd.choice(INTERESTING)
        elif op == 2:
            data[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 4)))
        elif op == 3 and data:
            del data[pos : pos + rnd.randint(1, 4)]
        elif op == 4:
            del data[rnd.randrange(len(data) + 1) :]
        else:
            data += msgpack.packb(rnd.choice([0, "x", [1], {"k": 1}]))
    return bytes(data)


def _decode_all(stream: bytes, chunk: int) -> int:
    """Feed ``stream`` in chunks; return how many frames decoded into valid messages."""
    decoder = FrameDecoder(max_frame=4096)
    valid = 0
    try:
        for i in range(0, len(stream), chunk):
            decoder.feed(stream[i : i + chunk])
            for frame in decoder.frames():
                try:
                    obj = unpack_payload(frame)
                    if obj.get("type") == "request":
                        parse_request(obj)
                    else:
                        parse_server_message(obj)
                    valid += 1
                except WireError:
                    pass
    except WireError:
        pass  # a framing error ends the connection, as the server does
    return valid


def test_fuzz_mutated_frames_never_crash() -> None:
    rnd = random.Random(20261128)
    payloads = [encode_message(m) for m in SEEDS]
    mutated_payloads = 0
    mutated_frames = 0
    for _ in range(30_000):
        payload = _mutate(rnd, bytearray(rnd.choice(payloads)))
        # mutate the payload inside a valid frame (exercises the msgpack/message layers)...
        _decode_all(encode_frame(payload, max_frame=1 << 20), rnd.randint(1, 64))
        mutated_payloads += 1
        # ...and mutate the framed bytes (exercises the varint/length layer too).
        frame = _mutate(rnd, bytearray(encode_frame(rnd.choice(payloads))))
        _decode_all(frame, rnd.randint(1, 64))
        mutated_frames += 1
    assert mutated_payloads + mutated_frames >= 50_000


def test_fuzz_unmutated_seeds_are_valid() -> None:
    """The fuzz corpus starts from valid frames (otherwise the fuzz proves little)."""
    stream = b"".join(encode_frame(encode_message(m)) for m in SEEDS)
    assert _decode_all(stream, 7) == len(SEEDS)

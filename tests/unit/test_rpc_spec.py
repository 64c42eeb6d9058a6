"""protocol-spec/rpc.md and rpc.schema.json agree with the code (stale docs fail here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from p2pchat.protocol.framing import FrameDecoder
from p2pchat.rpc import protocol
from p2pchat.rpc.errors import ERROR_TABLE
from p2pchat.rpc.protocol import Request, parse_request, unpack_payload
from p2pchat.rpc.server import BUILTIN_METHODS

SPEC = Path(__file__).resolve().parents[2] / "protocol-spec"
TEXT = (SPEC / "rpc.md").read_text()
SCHEMA = json.loads((SPEC / "schemas" / "rpc.schema.json").read_text())


def test_error_table_in_the_spec_matches_the_code() -> None:
    rows = re.findall(r"^\| (-?\d+) \| ([a-z-]+) \| `(\w+)` \|", TEXT, flags=re.M)
    documented = {(int(code), name, exc) for code, name, exc in rows}
    assert documented == {(r.code, r.name, r.exc.__name__) for r in ERROR_TABLE}


def test_builtin_methods_are_documented() -> None:
    documented = set(re.findall(r"^#### `([a-z.]+)`", TEXT, flags=re.M)) - {"dm.send"}
    assert documented == set(BUILTIN_METHODS)


def test_wire_example_decodes() -> None:
    pattern = r"the payload\n`([0-9a-f ]+)`\n\((\d+) bytes\) behind the length prefix `(\w+)`"
    match = re.search(pattern, TEXT)
    assert match is not None
    payload = bytes.fromhex(match.group(1).replace(" ", ""))
    assert len(payload) == int(match.group(2))
    decoder = FrameDecoder()
    decoder.feed(bytes.fromhex(match.group(3)) + payload)
    frame = decoder.next_frame()
    assert frame == payload
    assert parse_request(unpack_payload(payload)) == Request(2, "rpc.ping", {})


def _keys(name: str) -> tuple[set[str], set[str]]:
    d = SCHEMA["$defs"][name]
    assert d["additionalProperties"] is False
    return set(d["properties"]), set(d["required"])


def test_json_schema_matches_the_codec_field_sets() -> None:
    assert _keys("request") == (set(protocol._REQUEST_KEYS), {"type", "id", "method"})
    assert _keys("response")[0] == set(protocol._RESPONSE_KEYS)
    assert _keys("error_response")[0] == set(protocol._ERROR_RESPONSE_KEYS)
    assert _keys("event")[0] == set(protocol._EVENT_KEYS)
    assert _keys("close")[0] == set(protocol._CLOSE_KEYS)
    assert _keys("error") == (set(protocol._ERROR_KEYS), {"code", "name", "message"})
    assert SCHEMA["$defs"]["id"]["maximum"] == (1 << 53) - 1

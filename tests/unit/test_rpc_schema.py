"""Params schemas from dataclasses, and the method registry's rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import pytest

from p2pchat.rpc.errors import InvalidParamsError
from p2pchat.rpc.registry import Registry
from p2pchat.rpc.schema import Bounds, NoParams, ParamsSchema


@dataclass(frozen=True, slots=True)
class SendParams:
    to: Annotated[str, Bounds(max_len=8)]
    count: Annotated[int, Bounds(min=1, max=3)] = 1
    ratio: float = 0.5
    flag: bool = False
    blob: bytes | None = None
    tags: Annotated[list[str] | None, Bounds(max_len=2)] = None
    extra: dict[str, Any] | None = None
    anything: Any = None


SCHEMA = ParamsSchema(SendParams)


def test_valid_params_build_the_dataclass() -> None:
    p = SCHEMA.validate({"to": "bob", "count": 3, "ratio": 2, "tags": ["a"], "blob": b"x"})
    assert p == SendParams(to="bob", count=3, ratio=2, tags=["a"], blob=b"x")


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({}, "missing param: to"),
        ({"to": "bob", "nope": 1}, "unknown params: nope"),
        ({"to": 5}, "to must be str"),
        ({"to": "bob", "count": True}, "count must be int"),
        ({"to": "bob", "count": 1.0}, "count must be int"),
        ({"to": "bob", "count": 0}, "count out of range"),
        ({"to": "bob", "count": 4}, "count out of range"),
        ({"to": "123456789"}, "to longer than 8"),
        ({"to": "bob", "flag": 1}, "flag must be bool"),
        ({"to": "bob", "ratio": "x"}, "ratio must be float"),
        ({"to": "bob", "tags": ["a", 1]}, "list of str"),
        ({"to": "bob", "tags": ["a", "b", "c"]}, "tags longer than 2"),
        ({"to": "bob", "extra": []}, "extra must be map"),
        ({"to": None}, "to must be str"),
    ],
)
def test_invalid_params_are_rejected(params: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidParamsError, match=needle):
        SCHEMA.validate(params)


def test_nullable_fields_accept_none() -> None:
    assert SCHEMA.validate({"to": "a", "blob": None, "anything": [1]}).anything == [1]


def test_describe_is_introspectable() -> None:
    desc = SCHEMA.describe()
    assert desc["to"] == {"type": "str", "required": True, "max_len": 8}
    assert desc["count"] == {"type": "int", "required": False, "min": 1, "max": 3}
    assert desc["tags"] == {
        "type": "list",
        "required": False,
        "items": "str",
        "nullable": True,
        "max_len": 2,
    }


def test_unsupported_types_fail_at_registration() -> None:
    @dataclass(frozen=True)
    class Bad:
        x: set[int]

    @dataclass(frozen=True)
    class BadUnion:
        x: int | str

    with pytest.raises(TypeError):
        ParamsSchema(Bad)
    with pytest.raises(TypeError):
        ParamsSchema(BadUnion)
    with pytest.raises(TypeError):
        ParamsSchema(dict)


async def _noop(p: NoParams) -> None:
    return None


def test_registry_rules() -> None:
    reg = Registry()
    reg.add("dm.send", _noop, scope="send", params=NoParams, doc="Send a DM.")
    assert reg.get("dm.send") is not None
    assert reg.get("dm.nope") is None
    with pytest.raises(ValueError, match="already registered"):
        reg.add("dm.send", _noop, scope="send", params=NoParams)
    with pytest.raises(ValueError, match="reserved"):
        reg.add("rpc.ping", _noop, scope="read", params=NoParams)
    with pytest.raises(ValueError, match="reserved"):
        reg.add("events.more", _noop, scope="read", params=NoParams)
    with pytest.raises(ValueError, match="dotted"):
        reg.add("Send", _noop, scope="read", params=NoParams)
    with pytest.raises(ValueError, match="dotted"):
        reg.add("send", _noop, scope="read", params=NoParams)
    with pytest.raises(ValueError, match="scope"):
        reg.add("dm.x", _noop, scope="root", params=NoParams)  # type: ignore[arg-type]

    @reg.method("contacts.list", scope="read")
    async def contacts_list(p: NoParams) -> list[str]:
        """List contacts.

        More text that is not part of the one-line doc.
        """
        return []

    assert [m.name for m in reg] == ["contacts.list", "dm.send"]
    assert reg.get("contacts.list").describe() == {  # type: ignore[union-attr]
        "scope": "read",
        "params": {},
        "doc": "List contacts.",
    }
    assert len(reg) == 2
